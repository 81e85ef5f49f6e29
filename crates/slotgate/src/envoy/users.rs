//! Envoy's downstream AUTH (`downstream_auth_username`, `downstream_auth_passwords`, the older
//! `downstream_auth_password`) becomes `users:`, with every command, key and channel allowed.

use super::core_v3::{data_source, Source};
use super::output::{Converted, Secret, User};
use super::report::{ImportError, Report};
use super::tree::{Node, Obj};

/// Downstream AUTH → `users:`. Envoy accepts `AUTH <password>` with any of its passwords,
/// and `AUTH <username> <password>` when a username is set; slotgate users have one password
/// each, so the first password goes to `<username>` and to `default` (the user of
/// `AUTH <password>`), and further passwords are reported.
///
/// # Errors
/// Wrong types in the data sources.
pub fn convert(
    config: &mut Obj<'_>,
    out: &mut Converted,
    report: &mut Report,
) -> Result<(), ImportError> {
    let username = match config.take("downstream_auth_username") {
        Some(node) => username(&node, report)?,
        None => None,
    };
    let mut sources = Vec::new();
    if let Some(legacy) = config.take("downstream_auth_password") {
        sources.push(legacy);
    }
    if let Some(list) = config.take("downstream_auth_passwords") {
        sources.extend(list.list()?);
    }
    let mut passwords = Vec::new();
    for node in &sources {
        if let Some(secret) = Secret::from_source(data_source(node, report)?, &node.path, report) {
            passwords.push((secret, node.path.clone()));
        }
    }
    let Some(((first, _), extra)) = passwords.split_first() else {
        if let Some((_, path)) = &username {
            report.lost(
                path,
                "a user name without a password: Envoy let no client in; \
                    slotgate without users: lets every client in",
            );
        }
        return Ok(());
    };
    for (_, path) in extra {
        report.lost(
            path,
            "a further password: slotgate users have one password each, \
                and only the first one is kept",
        );
    }
    let name = username.map(|(name, _)| name).filter(|n| n != "default");
    if let Some(name) = &name {
        out.users.push(User {
            name: name.clone(),
            secret: first.clone(),
        });
    }
    out.users.push(User {
        name: "default".into(),
        secret: first.clone(),
    });
    out.users_comment = users_comment(name.as_deref(), passwords.len());
    Ok(())
}

fn users_comment(name: Option<&str>, passwords: usize) -> Vec<String> {
    let any = match passwords {
        1 => "its password".to_string(),
        n => format!("any of its {n} passwords"),
    };
    let mut lines = match name {
        Some(name) => vec![
            format!("Envoy accepted `AUTH {name} <password>` and `AUTH <password>` with {any}."),
            format!("slotgate users have one password each: `{name}` and `default` (the user of"),
            "`AUTH <password>`) both take the first one; `AUTH default <password>` now works too."
                .to_string(),
        ],
        None => vec![
            format!("Envoy accepted `AUTH <password>` (and `AUTH default <password>`) with {any}."),
            "slotgate users have one password each: `default` (the user of `AUTH <password>`)"
                .to_string(),
            "takes the first one.".to_string(),
        ],
    };
    lines.push("Rules allow every command, key and channel, as Envoy had no ACL.".to_string());
    lines
}

/// The downstream user name and its path; a file or an environment variable is reported
/// (slotgate needs the name itself in `users[].name`).
fn username(node: &Node<'_>, report: &mut Report) -> Result<Option<(String, String)>, ImportError> {
    let name = match data_source(node, report)? {
        Source::Inline(name) if name.is_empty() => return Ok(None),
        Source::Inline(name) if name.contains("${") => {
            report.literal_only(&node.path, &name, "users[].name");
            name
        }
        Source::Inline(name) => name,
        Source::Env(var) => {
            report.lost(
                &node.path,
                format!(
                    "the user name comes from environment variable {var}: \
                        slotgate needs the name itself in users[].name (written as a \
                        placeholder to edit)"
                ),
            );
            format!("${{{var}}}")
        }
        Source::File(file) => {
            report.lost(
                &node.path,
                format!(
                    "the user name is read from {file}: slotgate needs the name \
                        itself in users[].name; only `default` was converted"
                ),
            );
            return Ok(None);
        }
        Source::Binary => {
            report.lost(&node.path, "a user name that is not UTF-8 text");
            return Ok(None);
        }
    };
    Ok(Some((name, node.path.clone())))
}
