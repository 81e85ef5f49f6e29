//! The ACL user a node runs a restricted client's scripts as (`scripting.restricted_users:
//! mirror`). A node checks every command a script calls against the rights of the user its
//! connection authenticated as; slotgate's own connections authenticate as its upstream user,
//! which may do everything. So for a client whose rules grant less than every key and
//! channel, slotgate keeps on each primary an ACL user with exactly the client's rules and
//! runs that client's EVAL/EVALSHA/FCALL on connections authenticated as it: Redis itself then
//! refuses what the client may not do, with its own replies.
//!
//! The user's name and password are derived, not stored: the name from the client's user
//! name and rules (`slotgate-script-<16 hex digits>`), so changed rules make a new user and
//! no connection keeps old rights; the password from the name and the upstream password, so
//! every slotgate instance in front of the same cluster computes the same one and they do
//! not overwrite each other's.

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};

use crate::auth::users::UserSpec;

/// Every mirrored user's name starts with this; slotgate manages only such users.
pub const PREFIX: &str = "slotgate-script-";

/// One client user's identity on the nodes.
#[derive(Debug, Clone)]
pub struct ScriptIdentity {
    /// The ACL user name on the nodes.
    pub name: String,
    /// The client's user name (what a node's error naming `name` should say instead).
    pub user: String,
    /// `AUTH <name> <password>`, ready to send.
    pub auth: Bytes,
    /// `ACL SETUSER <name> reset <the client's rules> on #<sha256 of the password>`, ready to
    /// send: creates the user, or resets it to these rules.
    pub setuser: Bytes,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ScriptIdentity {
    /// The identity of `user` for a slotgate whose upstream password is `secret` (empty
    /// without one).
    pub fn of(user: &UserSpec, secret: &str) -> ScriptIdentity {
        let mut id = Sha256::new();
        id.update(user.name.as_bytes());
        id.update(b"\n");
        id.update(user.rules_text.as_bytes());
        let name = format!("{PREFIX}{}", &hex(&id.finalize())[..16]);
        let mut pw = Sha256::new();
        pw.update(b"slotgate script identity\n");
        pw.update(name.as_bytes());
        pw.update(b"\n");
        pw.update(secret.as_bytes());
        let password = hex(&pw.finalize());
        let password_digest = format!("#{}", hex(&Sha256::digest(password.as_bytes())));

        let mut auth = BytesMut::new();
        slotgate_resp::encode::command(
            &mut auth,
            &[&b"AUTH"[..], name.as_bytes(), password.as_bytes()],
        );
        let mut args: Vec<&[u8]> = vec![b"ACL", b"SETUSER", name.as_bytes(), b"reset"];
        // The client's rules as written (validated: no passwords, no selectors); `on` and
        // the password come last, so nothing in them can change those.
        args.extend(
            user.rules_text
                .split_ascii_whitespace()
                .filter(|r| !matches!(r.to_ascii_lowercase().as_str(), "on" | "off"))
                .map(str::as_bytes),
        );
        // ASKING too: a script whose slot is migrating is sent after it, on this connection.
        args.push(b"+asking");
        args.push(b"on");
        args.push(password_digest.as_bytes());
        let mut setuser = BytesMut::new();
        slotgate_resp::encode::command(&mut setuser, &args);
        ScriptIdentity {
            name,
            user: user.name.clone(),
            auth: auth.freeze(),
            setuser: setuser.freeze(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::users::PasswordCheck;

    fn user(name: &str, rules: &str) -> UserSpec {
        UserSpec::new(
            name,
            PasswordCheck::from_sha256_hex(&"0".repeat(64)).unwrap(),
            rules,
        )
        .unwrap()
    }

    #[test]
    fn names_follow_user_and_rules_and_passwords_the_secret() {
        let a = ScriptIdentity::of(&user("app", "+@all ~app:*"), "s");
        assert!(a.name.starts_with(PREFIX) && a.name.len() == PREFIX.len() + 16);
        assert_eq!(
            a.name,
            ScriptIdentity::of(&user("app", "+@all ~app:*"), "s").name
        );
        assert_ne!(
            a.name,
            ScriptIdentity::of(&user("app", "+@all ~app:* ~b:*"), "s").name
        );
        assert_ne!(
            a.name,
            ScriptIdentity::of(&user("other", "+@all ~app:*"), "s").name
        );
        assert_ne!(
            a.auth,
            ScriptIdentity::of(&user("app", "+@all ~app:*"), "t").auth
        );
    }

    #[test]
    fn setuser_carries_the_rules_then_on_and_the_password_digest() {
        let id = ScriptIdentity::of(
            &user("app", "off +@all -@dangerous ~app:* %R~ro:* &news:*"),
            "",
        );
        let text = String::from_utf8_lossy(&id.setuser);
        let args: Vec<&str> = text.split("\r\n").skip(2).step_by(2).collect();
        assert_eq!(&args[..4], &["ACL", "SETUSER", id.name.as_str(), "reset"]);
        assert_eq!(
            &args[4..9],
            &["+@all", "-@dangerous", "~app:*", "%R~ro:*", "&news:*"]
        );
        assert_eq!(&args[9..11], &["+asking", "on"]);
        assert!(args[11].starts_with('#') && args[11].len() == 65);
    }
}
