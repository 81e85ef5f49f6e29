//! Scripts and functions of restricted users, against a real cluster.
//!
//! A node runs a script as slotgate's upstream user, so the keys and channels a script touches
//! are never checked against the client's rules. With the default
//! `scripting.restricted_users: refuse`, every `@scripting` command (EVAL, EVALSHA, EVAL_RO,
//! EVALSHA_RO, FCALL, FCALL_RO, SCRIPT …, FUNCTION …) of a user whose rules grant less than
//! every key and channel is refused before anything reaches a node; users with `~* &*` script
//! as before. With `allow`, the operator's explicit opt-out, restricted users' scripts run.

use std::sync::OnceLock;

use slotgate_tests::raw::bulk;
use slotgate_tests::raw::RawConn;
use slotgate_tests::{shared_cluster, unique_key_prefix, ProxyConfig, Slotgate};

const OK: &[u8] = b"+OK\r\n";
const EXECABORT: &[u8] = b"-EXECABORT Transaction discarded because of previous errors.\r\n";
const NOPERM_KEY: &[u8] =
    b"-NOPERM this user has no permissions to access one of the keys used as arguments\r\n";

fn script_refused(name: &str) -> Vec<u8> {
    format!(
        "-NOPERM this user has no permissions to run the '{name}' command: slotgate runs scripts and functions only for users with access to every key and channel (~* &*)\r\n"
    )
    .into_bytes()
}

fn prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| unique_key_prefix("sacl"))
}

/// `admin` may do everything; `app` has keys `{prefix}app:*` and channels `app:*` (the
/// issue's tenant); `nochan` every key but no channel; `reader` every key read-only.
fn proxy_with(scripting: Option<&'static str>) -> Slotgate {
    let p = prefix();
    let mut config = ProxyConfig::new(&shared_cluster().seeds())
        .user("admin", "adminpass", "+@all ~* &*")
        .user(
            "app",
            "apppass",
            &format!("+@all -@dangerous ~{p}app:* &app:*"),
        )
        .user("nochan", "nochanpass", "+@all ~*")
        .user("reader", "readerpass", "+@all %R~* &*");
    if let Some(policy) = scripting {
        config = config.restricted_scripts(policy);
    }
    config.spawn()
}

/// The default policy (no `scripting:` block).
fn proxy() -> &'static Slotgate {
    static PROXY: OnceLock<Slotgate> = OnceLock::new();
    PROXY.get_or_init(|| proxy_with(None))
}

fn login(proxy: &Slotgate, user: &str) -> RawConn {
    let mut c = RawConn::connect(proxy.port());
    let pass = format!("{user}pass");
    c.roundtrip(&[b"AUTH", user.as_bytes(), pass.as_bytes()], OK);
    c
}

fn rt(c: &mut RawConn, args: &[&str], expected: &[u8]) {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    c.roundtrip(&args, expected);
}

/// `{prefix}app:{x}` (allowed for `app`) and `{prefix}other:{x}` (not), in one slot.
fn app_key() -> String {
    format!("{}app:{{x}}", prefix())
}
fn other_key() -> String {
    format!("{}other:{{x}}", prefix())
}

const READ_OTHER: &str = "return redis.call('get', ARGV[1])";
const WRITE_OTHER: &str = "return redis.call('set', ARGV[1], 'pwned')";

/// SCRIPT LOAD through `c`: the SHA1 it answers.
fn script_load(c: &mut RawConn, body: &str) -> String {
    assert!(c.send_command(&[b"SCRIPT", b"LOAD", body.as_bytes()]));
    let reply = c.read_reply().expect("SCRIPT LOAD reply");
    assert!(
        reply.starts_with(b"$40\r\n"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    String::from_utf8(reply[5..45].to_vec()).unwrap()
}

/// A library with `sg_get(key-as-arg)`, loaded on every primary by `admin` through slotgate.
fn load_library(proxy: &Slotgate) {
    let lib = "#!lua name=sgacl\nredis.register_function{function_name='sg_get', callback=function(keys, args) return redis.call('get', args[1]) end, flags={'no-writes'}}";
    let mut admin = login(proxy, "admin");
    rt(
        &mut admin,
        &["FUNCTION", "LOAD", "REPLACE", lib],
        &bulk("sgacl"),
    );
}

#[test]
fn restricted_users_cannot_run_scripts_or_functions() {
    let proxy = proxy();
    let (app, other) = (app_key(), other_key());
    let mut admin = login(proxy, "admin");
    rt(&mut admin, &["SET", &other, "secret"], OK);
    rt(&mut admin, &["SET", &app, "mine"], OK);
    load_library(proxy);
    let sha = {
        let body = format!("{READ_OTHER} -- {}", prefix());
        script_load(&mut admin, &body)
    };

    let mut c = login(proxy, "app");
    // The script: one declared key the user may use, a forbidden key read inside.
    let inline = format!("return redis.call('get','{other}')");
    rt(
        &mut c,
        &["EVAL", &inline, "1", &app],
        &script_refused("eval"),
    );
    rt(
        &mut c,
        &["EVAL", READ_OTHER, "1", &app, &other],
        &script_refused("eval"),
    );
    // No keys declared at all.
    rt(
        &mut c,
        &["EVAL", READ_OTHER, "0", &other],
        &script_refused("eval"),
    );
    // A write of a forbidden key: refused, and nothing was written.
    rt(
        &mut c,
        &["EVAL", WRITE_OTHER, "0", &other],
        &script_refused("eval"),
    );
    assert_eq!(shared_cluster().get(&other).as_deref(), Some("secret"));
    rt(
        &mut c,
        &["EVAL_RO", READ_OTHER, "0", &other],
        &script_refused("eval_ro"),
    );
    rt(
        &mut c,
        &["EVALSHA", &sha, "0", &other],
        &script_refused("evalsha"),
    );
    rt(
        &mut c,
        &["EVALSHA_RO", &sha, "0", &other],
        &script_refused("evalsha_ro"),
    );
    // Functions.
    rt(
        &mut c,
        &["FCALL", "sg_get", "0", &other],
        &script_refused("fcall"),
    );
    rt(
        &mut c,
        &["FCALL_RO", "sg_get", "0", &other],
        &script_refused("fcall_ro"),
    );
    // Script and function management.
    rt(
        &mut c,
        &["SCRIPT", "LOAD", READ_OTHER],
        &script_refused("script|load"),
    );
    rt(
        &mut c,
        &["SCRIPT", "EXISTS", &sha],
        &script_refused("script|exists"),
    );
    rt(
        &mut c,
        &["FUNCTION", "LIST"],
        &script_refused("function|list"),
    );
    rt(
        &mut c,
        &[
            "FUNCTION",
            "LOAD",
            "#!lua name=evil\nredis.register_function('e', function() return 1 end)",
        ],
        &script_refused("function|load"),
    );
    // Inside MULTI: refused at queueing, and EXEC aborts.
    rt(&mut c, &["MULTI"], OK);
    rt(
        &mut c,
        &["EVAL", WRITE_OTHER, "0", &other],
        &script_refused("eval"),
    );
    rt(&mut c, &["EXEC"], EXECABORT);
    assert_eq!(shared_cluster().get(&other).as_deref(), Some("secret"));
    // The user's ordinary commands are untouched.
    rt(&mut c, &["GET", &app], &bulk("mine"));
    rt(&mut c, &["GET", &other], NOPERM_KEY);

    // Every key but no channel: a script could PUBLISH anywhere, so refused too.
    let mut nochan = login(proxy, "nochan");
    rt(
        &mut nochan,
        &["EVAL", "return 1", "0"],
        &script_refused("eval"),
    );
    rt(&mut nochan, &["GET", &app], &bulk("mine"));

    // Read-only on every key (`%R~*`): a script could write, so refused.
    let mut reader = login(proxy, "reader");
    rt(
        &mut reader,
        &["EVAL", "return redis.call('set', KEYS[1], 'x')", "1", &app],
        &script_refused("eval"),
    );
    rt(
        &mut reader,
        &["EVAL_RO", "return redis.call('get', KEYS[1])", "1", &app],
        &script_refused("eval_ro"),
    );
    assert_eq!(shared_cluster().get(&app).as_deref(), Some("mine"));
}

#[test]
fn users_with_every_key_and_channel_script_as_before() {
    let proxy = proxy();
    let key = format!("{}full:{{y}}", prefix());
    load_library(proxy);
    let mut c = login(proxy, "admin");
    rt(&mut c, &["SET", &key, "v"], OK);
    rt(
        &mut c,
        &["EVAL", "return redis.call('get', KEYS[1])", "1", &key],
        &bulk("v"),
    );
    rt(
        &mut c,
        &["EVAL_RO", "return redis.call('get', KEYS[1])", "1", &key],
        &bulk("v"),
    );
    let sha = script_load(&mut c, "return redis.call('get', KEYS[1])");
    rt(&mut c, &["EVALSHA", &sha, "1", &key], &bulk("v"));
    rt(&mut c, &["FCALL", "sg_get", "1", &key, &key], &bulk("v"));
    rt(&mut c, &["FCALL_RO", "sg_get", "1", &key, &key], &bulk("v"));
    rt(
        &mut c,
        &["EVAL", "return redis.call('set', KEYS[1], 'w')", "1", &key],
        OK,
    );
    assert_eq!(shared_cluster().get(&key).as_deref(), Some("w"));
}

#[test]
fn allow_lets_restricted_users_script_unchecked() {
    // The opt-out documented in docs/configuration.md: the script runs with slotgate's
    // upstream rights, so the forbidden key is read. This pins what `allow` means.
    let proxy = proxy_with(Some("allow"));
    let (app, other) = (
        format!("{}app:{{z}}", prefix()),
        format!("{}other:{{z}}", prefix()),
    );
    let mut admin = login(&proxy, "admin");
    rt(&mut admin, &["SET", &other, "exposed"], OK);
    let mut c = login(&proxy, "app");
    rt(
        &mut c,
        &["EVAL", READ_OTHER, "1", &app, &other],
        &bulk("exposed"),
    );
    // The line check still applies: a declared forbidden key is refused.
    rt(
        &mut c,
        &["EVAL", READ_OTHER, "1", &other, &other],
        NOPERM_KEY,
    );
}
