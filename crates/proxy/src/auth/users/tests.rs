use super::*;

/// `printf %s 'secret' | sha256sum`
const SECRET_SHA256: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

fn user(name: &str, password: &str, rules: &str) -> UserSpec {
    UserSpec::new(
        name,
        PasswordCheck::from_password(password.as_bytes()),
        rules,
    )
    .unwrap()
}

#[test]
fn password_matches_only_itself() {
    let check = PasswordCheck::from_password(b"secret");
    assert!(check.matches(b"secret"));
    assert!(!check.matches(b"Secret"));
    assert!(!check.matches(b"secret "));
    assert!(!check.matches(b""));
}

#[test]
fn sha256_hex_is_the_digest_of_the_password() {
    let from_hex = PasswordCheck::from_sha256_hex(SECRET_SHA256).unwrap();
    assert_eq!(from_hex, PasswordCheck::from_password(b"secret"));
    assert!(from_hex.matches(b"secret"));
    let upper = PasswordCheck::from_sha256_hex(&SECRET_SHA256.to_ascii_uppercase()).unwrap();
    assert_eq!(upper, from_hex);
}

#[test]
fn sha256_hex_must_be_64_hex_digits() {
    for bad in [
        "",
        &SECRET_SHA256[..63],
        &format!("{SECRET_SHA256}0"),
        &format!("{}g", &SECRET_SHA256[..63]),
        &format!("{} ", &SECRET_SHA256[..63]),
        // 64 bytes, but not ASCII: must not split a character or panic.
        &format!("é{}", &SECRET_SHA256[..62]),
    ] {
        assert_eq!(
            PasswordCheck::from_sha256_hex(bad),
            Err(BadDigest),
            "{bad:?}"
        );
    }
}

#[test]
fn constant_time_compare_sees_every_byte() {
    let check = PasswordCheck::from_password(b"secret");
    for i in 0..32 {
        let mut other = check.digest;
        other[i] ^= 0x01;
        assert!(!check.matches_digest(&other), "byte {i}");
        other[i] ^= 0x01;
        assert!(check.matches_digest(&other));
    }
}

#[test]
fn debug_never_shows_the_digest() {
    let u = user("app", "secret", "+@all ~*");
    let text = format!("{u:?}");
    assert!(text.contains("********"), "{text}");
    assert!(!text.contains("2bb80d"), "{text}");
}

#[test]
fn user_names_are_unique_and_plain() {
    assert!(validate_users(&[user("a", "x", ""), user("b", "x", "")]).is_ok());
    let err = validate_users(&[user("a", "x", ""), user("a", "y", "")]).unwrap_err();
    assert!(err.contains("\"a\" is defined twice"), "{err}");
    assert!(validate_users(&[user("", "x", "")]).is_err());
    assert!(validate_users(&[user("a b", "x", "")]).is_err());
}

#[test]
fn authenticate_checks_name_password_and_on() {
    let users = Users::new();
    users.install(
        &[
            user("app", "apppass", "+@all ~app:*"),
            user("gone", "gonepass", "off +@all ~*"),
        ],
        RestrictedScripts::Refuse,
    );
    assert!(users.required());
    assert_eq!(users.authenticate(b"app", b"apppass").unwrap().name, "app");
    assert!(users.authenticate(b"app", b"wrong").is_none());
    assert!(
        users.authenticate(b"APP", b"apppass").is_none(),
        "names are case-sensitive"
    );
    assert!(users.authenticate(b"nosuch", b"apppass").is_none());
    assert!(
        users.authenticate(b"gone", b"gonepass").is_none(),
        "an off user cannot log in"
    );
}

#[test]
fn no_users_means_no_client_auth() {
    let users = Users::new();
    users.install(&[], RestrictedScripts::Refuse);
    assert!(!users.required());
    assert!(ClientAuth::for_new_connection(&users).is_none());
    assert!(users.subscribe().is_none());
}

#[test]
fn reload_updates_rules_and_revokes_removed_or_off_users() {
    let users = Users::new();
    users.install(
        &[user("app", "p", "+get ~*"), user("other", "p", "+@all ~*")],
        RestrictedScripts::Refuse,
    );
    let mut auth = ClientAuth::for_new_connection(&users).unwrap();
    assert!(auth.user().is_none());
    auth.user = users.authenticate(b"app", b"p");
    auth.generation = users.generation();
    let rx = users.subscribe().unwrap();
    assert!(auth.refresh(&users), "nothing reloaded");

    // New rules, new password: the session keeps its login and gets the rules.
    users
        .reload(
            &[
                user("app", "new", "+set ~*"),
                user("other", "p", "+@all ~*"),
            ],
            RestrictedScripts::Refuse,
        )
        .unwrap();
    assert!(rx.has_changed().unwrap());
    assert!(auth.refresh(&users));
    assert_eq!(auth.user().unwrap().rules_text, "+set ~*");

    // Turned off: revoked.
    users
        .reload(
            &[user("app", "new", "off +set ~*"), user("other", "p", "")],
            RestrictedScripts::Refuse,
        )
        .unwrap();
    assert!(!auth.refresh(&users));

    // Removed: revoked.
    let mut auth2 = ClientAuth::for_new_connection(&users).unwrap();
    auth2.user = users.authenticate(b"other", b"p");
    auth2.generation = users.generation();
    users
        .reload(&[user("app", "new", "+@all")], RestrictedScripts::Refuse)
        .unwrap();
    assert!(!auth2.refresh(&users));
}

#[test]
fn reload_cannot_turn_authentication_on_or_off() {
    let with = Users::new();
    with.install(&[user("app", "p", "")], RestrictedScripts::Refuse);
    let err = with.reload(&[], RestrictedScripts::Refuse).unwrap_err();
    assert!(err.contains("restart"), "{err}");
    let without = Users::new();
    without.install(&[], RestrictedScripts::Refuse);
    let err = without
        .reload(&[user("app", "p", "")], RestrictedScripts::Refuse)
        .unwrap_err();
    assert!(err.contains("restart"), "{err}");
    assert!(without.reload(&[], RestrictedScripts::Refuse).is_ok());
    // A refused reload keeps the old table.
    let err = with
        .reload(
            &[user("a", "p", ""), user("a", "q", "")],
            RestrictedScripts::Refuse,
        )
        .unwrap_err();
    assert!(err.contains("twice"), "{err}");
    assert!(with.find(b"app").is_some());
    assert_eq!(with.generation(), 0);
}

#[test]
fn scripts_are_refused_only_for_restricted_users_under_refuse() {
    let users = Users::new();
    users.install(
        &[
            user("full", "p", "+@all ~* &*"),
            user("allkeys", "p", "+@all allkeys allchannels"),
            user("keys", "p", "+@all ~app:* &*"),
            user("channels", "p", "+@all ~* &app:*"),
            user("readonly", "p", "+@all %R~* &*"),
        ],
        RestrictedScripts::Refuse,
    );
    let refused = |name: &str| users.find(name.as_bytes()).unwrap().scripts_refused();
    assert!(!refused("full"));
    assert!(!refused("allkeys"));
    assert!(refused("keys"));
    assert!(refused("channels"));
    assert!(
        refused("readonly"),
        "%R~* is not every key with every access"
    );

    // A reload applies the policy again; under Allow nobody is refused.
    users
        .reload(
            &[user("keys", "p", "+@all ~app:* &*")],
            RestrictedScripts::Allow,
        )
        .unwrap();
    assert!(!refused("keys"));
    users
        .reload(
            &[user("keys", "p", "+@all ~app:* &*")],
            RestrictedScripts::Refuse,
        )
        .unwrap();
    assert!(refused("keys"));
}

#[test]
fn under_mirror_restricted_users_scripts_are_mirrored_not_refused() {
    let users = Users::new();
    users.install(
        &[
            user("full", "p", "+@all ~* &*"),
            user("keys", "p", "+@all ~app:* &*"),
        ],
        RestrictedScripts::Mirror,
    );
    let find = |name: &str| users.find(name.as_bytes()).unwrap();
    assert!(!find("full").scripts_mirrored() && !find("full").scripts_refused());
    assert!(find("keys").scripts_mirrored() && !find("keys").scripts_refused());
}
