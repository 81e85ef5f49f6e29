//! `users:` — downstream users as the YAML file writes them, turned into the engine's
//! [`UserSpec`]s: one password source per user (`password` with `${VAR}` expansion,
//! `password_sha256`, or `password_file`), only the SHA-256 kept, rules parsed by
//! [`AclRules`](slotgate_proxy::acl::AclRules). Every error names the user.

use std::fmt::Write as _;

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;
use slotgate_proxy::{PasswordCheck, UserSpec};

use super::expand_env;

/// One entry of `users:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileUser {
    name: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    password_sha256: Option<String>,
    #[serde(default)]
    password_file: Option<String>,
    #[serde(default)]
    rules: String,
}

/// Resolve every user: read password files, expand `${VAR}`, hash, parse rules.
///
/// # Errors
/// A user with no or several password sources, an empty password, a bad digest, an
/// unreadable file, an unset variable, a rule [`AclRules`](slotgate_proxy::acl::AclRules)
/// refuses, or a duplicate name.
pub(super) fn resolve(users: Vec<FileUser>) -> anyhow::Result<Vec<UserSpec>> {
    let mut out: Vec<UserSpec> = Vec::with_capacity(users.len());
    for (i, u) in users.into_iter().enumerate() {
        let what = || format!("users[{i}] ({:?})", u.name);
        let password = password_check(&u).with_context(what)?;
        let spec = UserSpec::new(&u.name, password, &u.rules)
            .map_err(|e| anyhow!("rules: {e}"))
            .with_context(what)?;
        out.push(spec);
    }
    slotgate_proxy::auth::users::validate_users(&out).map_err(|e| anyhow!(e))?;
    Ok(out)
}

fn password_check(u: &FileUser) -> anyhow::Result<PasswordCheck> {
    let clear = match (&u.password, &u.password_sha256, &u.password_file) {
        (Some(p), None, None) => expand_env(p).context("password")?,
        (None, Some(hex), None) => {
            return PasswordCheck::from_sha256_hex(hex.trim()).context("password_sha256")
        }
        (None, None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("password_file: cannot read {file}"))?
            .trim_end_matches(['\r', '\n'])
            .to_string(),
        (None, None, None) => bail!("give one of password, password_sha256 or password_file"),
        _ => bail!("give only one of password, password_sha256 or password_file"),
    };
    if clear.is_empty() {
        bail!("the password is empty (omit `users:` to run without authentication)");
    }
    Ok(PasswordCheck::from_password(clear.as_bytes()))
}

/// The `users:` block of `check-config`, passwords masked.
pub(super) fn describe(s: &mut String, users: &[UserSpec]) {
    if users.is_empty() {
        let _ = writeln!(s, "users: [] # clients need not authenticate");
        return;
    }
    let _ = writeln!(s, "users:");
    for u in users {
        let _ = writeln!(
            s,
            "  - name: {:?}\n    password_sha256: \"********\"\n    rules: {:?}",
            u.name, u.rules_text
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;

    const BASE: &str = "listen: \"127.0.0.1:6380\"\nupstream:\n  seeds: [\"127.0.0.1:7000\"]\n";

    fn with_users(users: &str) -> anyhow::Result<super::super::Settings> {
        parse(&format!("{BASE}users:\n{users}"))
    }

    fn error_of(users: &str) -> String {
        format!("{:#}", with_users(users).unwrap_err())
    }

    #[test]
    fn every_password_source() {
        std::env::set_var("SLOTGATE_TEST_USER_PW", "from-env");
        let file = std::env::temp_dir().join(format!("slotgate-test-pw-{}", std::process::id()));
        std::fs::write(&file, "from-file\n").unwrap();
        let s = with_users(&format!(
            "  - name: plain\n    password: \"p1\"\n    rules: \"+@all ~*\"\n\
             \x20 - name: env\n    password: \"${{SLOTGATE_TEST_USER_PW}}\"\n\
             \x20 - name: hashed\n    password_sha256: \"2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b\"\n\
             \x20 - name: file\n    password_file: \"{}\"\n",
            file.display()
        ))
        .unwrap();
        let _ = std::fs::remove_file(&file);
        let users = &s.proxy.users;
        assert_eq!(users.len(), 4);
        assert!(users[0].password.matches(b"p1"));
        assert!(users[0].rules.allows_all_keys());
        assert!(users[1].password.matches(b"from-env"));
        assert!(users[2].password.matches(b"secret"));
        assert!(
            users[3].password.matches(b"from-file"),
            "trailing newline trimmed"
        );
        assert!(!users[3].password.matches(b"from-file\n"));
        // No rules: a user that may do nothing (like ACL SETUSER name on).
        assert!(!users[1].rules.allows_all_keys());
    }

    #[test]
    fn check_config_masks_secrets() {
        let s = with_users(
            "  - name: app\n    password: \"hunter2hunter2\"\n    rules: \"+@all -@dangerous ~app:*\"\n",
        )
        .unwrap();
        let text = s.describe();
        assert!(text.contains("users:\n  - name: \"app\"\n    password_sha256: \"********\"\n    rules: \"+@all -@dangerous ~app:*\""), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        // Not the digest either (`printf %s hunter2hunter2 | sha256sum`).
        let digest = "76880d60191af3b3f803a656b7716f0179928357fc32421ced973ed265e15718";
        assert!(!text.contains(&digest[..12]), "{text}");
    }

    #[test]
    fn errors_name_the_user() {
        let e = error_of("  - name: app\n    password: \"x\"\n    rules: \"+@all +nosuch\"\n");
        assert!(e.contains("\"app\""), "{e}");
        assert!(e.contains("Error in ACL SETUSER modifier '+nosuch'"), "{e}");

        let e = error_of("  - name: app\n    rules: \"+@all\"\n");
        assert!(e.contains("\"app\"") && e.contains("give one of"), "{e}");

        let e = error_of("  - name: app\n    password: \"x\"\n    password_sha256: \"00\"\n");
        assert!(e.contains("only one of"), "{e}");

        let e = error_of("  - name: app\n    password_sha256: \"abc\"\n");
        assert!(e.contains("\"app\"") && e.contains("64 hexadecimal"), "{e}");

        let e = error_of("  - name: app\n    password: \"${SLOTGATE_SURELY_UNSET_VAR}\"\n");
        assert!(e.contains("SLOTGATE_SURELY_UNSET_VAR"), "{e}");

        let e = error_of("  - name: app\n    password: \"\"\n");
        assert!(e.contains("empty"), "{e}");

        let e = error_of("  - name: app\n    password_file: /nonexistent/slotgate-pw\n");
        assert!(e.contains("cannot read"), "{e}");

        let e = error_of("  - name: app\n    password: \"x\"\n    rules: \"+@all >pw\"\n");
        assert!(e.contains("passwords are not ACL rules"), "{e}");
        assert!(!e.contains("pw'"), "the password rule is not echoed: {e}");
    }

    #[test]
    fn duplicate_names_and_unknown_keys_are_errors() {
        let e =
            error_of("  - name: app\n    password: \"x\"\n  - name: app\n    password: \"y\"\n");
        assert!(e.contains("\"app\" is defined twice"), "{e}");
        let e = error_of("  - name: app\n    password: \"x\"\n    passwd: \"y\"\n");
        assert!(e.contains("passwd"), "{e}");
        let e = error_of("  - name: \"a b\"\n    password: \"x\"\n");
        assert!(e.contains("spaces"), "{e}");
    }

    #[test]
    fn auth_failure_delay() {
        let s = parse(BASE).unwrap();
        assert_eq!(
            s.proxy.limits.auth_failure_delay,
            std::time::Duration::from_secs(1)
        );
        assert!(s.proxy.users.is_empty());
        let s = parse(&format!("{BASE}limits:\n  auth_failure_delay: 250ms\n")).unwrap();
        assert_eq!(
            s.proxy.limits.auth_failure_delay,
            std::time::Duration::from_millis(250)
        );
        let s = parse(&format!("{BASE}limits:\n  auth_failure_delay: 0s\n")).unwrap();
        assert!(s.proxy.limits.auth_failure_delay.is_zero());
        assert!(parse(&format!("{BASE}limits:\n  auth_failure_delay: 3\n")).is_err());
    }
}
