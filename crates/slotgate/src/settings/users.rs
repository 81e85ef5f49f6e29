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

/// Resolve every user of `users:` (read password files, expand `${VAR}`, hash, parse rules),
/// then add those of `users_file`.
///
/// # Errors
/// A user with no or several password sources, an empty password, a bad digest, an
/// unreadable file, an unset variable, a rule [`AclRules`](slotgate_proxy::acl::AclRules)
/// refuses, or a duplicate name.
pub(super) fn resolve(
    users: Vec<FileUser>,
    users_file: Option<&str>,
) -> anyhow::Result<Vec<UserSpec>> {
    let mut out: Vec<UserSpec> = Vec::with_capacity(users.len());
    for (i, u) in users.into_iter().enumerate() {
        let what = || format!("users[{i}] ({:?})", u.name);
        let password = password_check(&u).with_context(what)?;
        let spec = UserSpec::new(&u.name, password, &u.rules)
            .map_err(|e| anyhow!("rules: {e}"))
            .with_context(what)?;
        out.push(spec);
    }
    let Some(path) = users_file else {
        slotgate_proxy::auth::users::validate_users(&out).map_err(|e| anyhow!(e))?;
        return Ok(out);
    };
    let path = expand_env(path).context("users_file")?;
    out.extend(from_acl_file(&path)?);
    slotgate_proxy::auth::users::validate_users(&out)
        .map_err(|e| anyhow!(e))
        .with_context(|| format!("users_file {path}: with users:"))?;
    Ok(out)
}

fn password_check(u: &FileUser) -> anyhow::Result<PasswordCheck> {
    let clear = match (&u.password, &u.password_sha256, &u.password_file) {
        (Some(p), None, None) => expand_env(p).context("password")?,
        (None, Some(hex), None) => {
            return PasswordCheck::from_sha256_hex(hex.trim()).context("password_sha256")
        }
        (None, None, Some(file)) => std::fs::read_to_string(expand_env(file)?)
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

/// Users from a Redis ACL file (`users_file:`), as `ACL LOAD` reads one: a line
/// `user NAME rule…` per user, rules applied left to right; blank lines and lines starting
/// with `#` are skipped. A user is `off` until a rule says `on`, as in Redis. Passwords are
/// rules there: `>password` or `#sha256` (one per user:
/// slotgate users have one password), `resetpass` and `reset` forget it, `<password` and
/// `!sha256` remove it. A user without a password must be `off`.
///
/// # Errors
/// The file and line of the first line that is not a user, a password slotgate cannot take,
/// or a rule it refuses.
pub(super) fn from_acl_file(path: &str) -> anyhow::Result<Vec<UserSpec>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("users_file: cannot read {path}"))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let user = acl_line(line).with_context(|| format!("users_file {path}:{}", i + 1))?;
        out.push(user);
    }
    Ok(out)
}

/// One `user NAME rule…` line.
fn acl_line(line: &str) -> anyhow::Result<UserSpec> {
    let mut words = line.split_whitespace();
    if words.next() != Some("user") {
        bail!("expected `user NAME rule…`");
    }
    let name = words.next().context("`user` without a name")?;
    let mut password: Option<PasswordCheck> = None;
    // As in Redis, a user is off until a rule says `on`.
    let mut rules: Vec<&str> = vec!["off"];
    for word in words {
        let removes = |p: &Option<PasswordCheck>, check: PasswordCheck| {
            p.as_ref().filter(|c| **c != check).cloned()
        };
        match word.as_bytes().first() {
            Some(b'>') | Some(b'#') if password.is_some() => bail!(
                "user {name:?} has several passwords; slotgate users have one (use resetpass \
                 before a new one)"
            ),
            Some(b'>') => password = Some(PasswordCheck::from_password(&word.as_bytes()[1..])),
            Some(b'#') => {
                password = Some(
                    PasswordCheck::from_sha256_hex(&word[1..])
                        .map_err(|_| anyhow!("user {name:?}: #… must be 64 hex digits"))?,
                )
            }
            Some(b'<') => {
                password = removes(
                    &password,
                    PasswordCheck::from_password(&word.as_bytes()[1..]),
                )
            }
            Some(b'!') => {
                let check = PasswordCheck::from_sha256_hex(&word[1..])
                    .map_err(|_| anyhow!("user {name:?}: !… must be 64 hex digits"))?;
                password = removes(&password, check);
            }
            _ if word.eq_ignore_ascii_case("resetpass") => password = None,
            _ if word.eq_ignore_ascii_case("nopass") => bail!(
                "user {name:?}: nopass (any password) is not supported; give the user a \
                 password, or omit users to run without authentication"
            ),
            _ => {
                if word.eq_ignore_ascii_case("reset") {
                    password = None;
                }
                rules.push(word);
            }
        }
    }
    let rules = rules.join(" ");
    let spec = |password| UserSpec::new(name, password, &rules).map_err(|e| anyhow!("rules: {e}"));
    match password {
        Some(p) => spec(p),
        None => {
            // Only a user that cannot log in may lack a password.
            let never =
                PasswordCheck::from_password(format!("{:?}", std::time::Instant::now()).as_bytes());
            let user = spec(never)?;
            if user.rules.is_enabled() {
                bail!("user {name:?} has no password (>password or #sha256)");
            }
            Ok(user)
        }
    }
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

    fn acl_file(text: &str) -> std::path::PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "slotgate-test-acl-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_redis_acl_file_adds_users() {
        let path = acl_file(
            "# team accounts\n\
             user alice on >wonderland ~app:* &* +@all -@dangerous\n\
             \n\
             user bob on #2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b +@read ~*\n\
             user carol >pw1 resetpass >pw2 allkeys +get\n\
             user gone off\n",
        );
        let s = parse(&format!(
            "{BASE}users:\n  - name: app\n    password: \"p\"\n    rules: \"+@all ~*\"\nusers_file: \"{}\"\n",
            path.display()
        ))
        .unwrap();
        let _ = std::fs::remove_file(&path);
        let users = &s.proxy.users;
        let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["app", "alice", "bob", "carol", "gone"]);
        assert!(users[1].password.matches(b"wonderland"));
        assert!(users[1].rules.is_enabled());
        assert!(users[2].password.matches(b"secret"));
        // No `on`: off, as Redis creates users; the last password after resetpass.
        assert!(!users[3].rules.is_enabled());
        assert!(users[3].password.matches(b"pw2") && !users[3].password.matches(b"pw1"));
        assert!(!users[4].rules.is_enabled());
        let shown = s.describe();
        assert!(!shown.contains("wonderland"), "{shown}");
    }

    #[test]
    fn acl_file_errors_name_the_file_and_line() {
        let bad = |text: &str| {
            let path = acl_file(text);
            let e = format!(
                "{:#}",
                parse(&format!("{BASE}users_file: \"{}\"\n", path.display())).unwrap_err()
            );
            let _ = std::fs::remove_file(&path);
            assert!(e.contains(&format!("{}:", path.display())), "{e}");
            e
        };
        let e = bad("user ok on >pw +@all ~*\nrole admin\n");
        assert!(e.contains(":2") && e.contains("expected `user NAME"), "{e}");
        let e = bad("user a on >x >y ~*\n");
        assert!(e.contains("several passwords"), "{e}");
        assert!(!e.contains(">x") && !e.contains(">y"), "{e}");
        let e = bad("user a on nopass ~*\n");
        assert!(e.contains("nopass"), "{e}");
        let e = bad("user a on ~*\n");
        assert!(e.contains("no password"), "{e}");
        let e = bad("user a on >pw +nosuchcommand\n");
        assert!(e.contains("rules"), "{e}");
        let e = bad("user a on >pw ~*\nuser a on >pw2 ~*\n");
        assert!(e.contains("a"), "{e}");
        let e = format!(
            "{:#}",
            parse(&format!("{BASE}users_file: /nonexistent/acl\n")).unwrap_err()
        );
        assert!(
            e.contains("users_file") && e.contains("/nonexistent/acl"),
            "{e}"
        );
    }
}
