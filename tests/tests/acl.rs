//! Downstream users and ACLs against a real cluster: the exact OK / NOAUTH /
//! WRONGPASS / NOPERM replies for a matrix of users × commands × keys (split commands with
//! one forbidden key run nothing), real clients logging in (redis-cli `--user/--pass` and
//! `-a`, redis-rs with a `redis://user:pass@` URL), the delay after repeated failures, users
//! reloaded on SIGHUP while clients stay connected, and `slotgate_auth_failures_total`.
//!
//! Every reply text here was checked against redis-server 7.0.15 with the same users made by
//! `ACL SETUSER`.

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use slotgate_tests::raw::bulk;
use slotgate_tests::raw::RawConn;
use slotgate_tests::{assert_eventually, shared_cluster, unique_key_prefix, ProxyConfig, Slotgate};

const OK: &[u8] = b"+OK\r\n";
const NIL: &[u8] = b"$-1\r\n";
const NOAUTH: &[u8] = b"-NOAUTH Authentication required.\r\n";
const HELLO_NOAUTH: &[u8] = b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n";
const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
const NOPERM_KEY: &[u8] =
    b"-NOPERM this user has no permissions to access one of the keys used as arguments\r\n";
const NOPERM_CHANNEL: &[u8] =
    b"-NOPERM this user has no permissions to access one of the channels used as arguments\r\n";

/// `printf %s apppass | sha256sum`
const APPPASS_SHA256: &str = "46400f642c99584e51b14031f875ca9b7b33ccf94ff8d7657197a5bac06f4ffb";

fn noperm_command(name: &str) -> Vec<u8> {
    format!("-NOPERM this user has no permissions to run the '{name}' command\r\n").into_bytes()
}

/// A configuration in front of the shared cluster with the users `default` (everything),
/// `app` (no @dangerous, keys under `{prefix}app:`, channels `news:*`), `reader` (read-only
/// on every key, password from the environment), `gone` (`off`).
fn with_users() -> ProxyConfig {
    let prefix = prefix();
    ProxyConfig::new(&shared_cluster().seeds())
        .user("default", "defpass", "+@all ~* &*")
        .user_sha256(
            "app",
            APPPASS_SHA256,
            &format!("+@all -@dangerous ~{prefix}app:* &news:*"),
        )
        .user("reader", "${ACL_TEST_READER_PW}", "+@all %R~*")
        .env("ACL_TEST_READER_PW", "readerpass")
        .user("gone", "gonepass", "off +@all ~*")
}

/// The shared proxy for the matrix and the client tests: [`with_users`].
fn proxy() -> &'static Slotgate {
    static PROXY: OnceLock<Slotgate> = OnceLock::new();
    PROXY.get_or_init(|| with_users().spawn())
}

fn prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| unique_key_prefix("acl"))
}

/// `{prefix}app:<name>` (allowed for `app`) and `{prefix}other:<name>` (not).
fn app_key(name: &str) -> String {
    format!("{}app:{name}", prefix())
}
fn other_key(name: &str) -> String {
    format!("{}other:{name}", prefix())
}

fn conn() -> RawConn {
    RawConn::connect(proxy().port())
}

fn login(c: &mut RawConn, user: &str, pass: &str) {
    c.roundtrip(&[b"AUTH", user.as_bytes(), pass.as_bytes()], OK);
}

fn rt(c: &mut RawConn, args: &[&str], expected: &[u8]) {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    c.roundtrip(&args, expected);
}

#[test]
fn unauthenticated_clients_get_noauth() {
    let mut c = conn();
    rt(&mut c, &["PING"], NOAUTH);
    rt(&mut c, &["GET", &app_key("x")], NOAUTH);
    rt(&mut c, &["ACL", "WHOAMI"], NOAUTH);
    rt(&mut c, &["CLIENT", "INFO"], NOAUTH);
    rt(&mut c, &["INFO"], NOAUTH);
    rt(&mut c, &["MGET", &app_key("a"), &app_key("b")], NOAUTH);
    assert!(c.send(b"PING\r\n"), "inline");
    c.expect(NOAUTH);
    // HELLO without AUTH: Redis 7.0.15's own wording.
    rt(&mut c, &["HELLO"], HELLO_NOAUTH);
    rt(&mut c, &["HELLO", "2"], HELLO_NOAUTH);
    rt(&mut c, &["HELLO", "2", "SETNAME", "x"], HELLO_NOAUTH);
    // As in Redis, an unknown command and a wrong arity are answered before the auth check.
    rt(
        &mut c,
        &["NOSUCH", "a"],
        b"-ERR unknown command 'NOSUCH', with args beginning with: 'a' \r\n",
    );
    rt(
        &mut c,
        &["GET"],
        b"-ERR wrong number of arguments for 'get' command\r\n",
    );
    rt(&mut c, &["RESET"], b"+RESET\r\n");
    rt(&mut c, &["QUIT"], OK);
    assert!(c.closed_within(Duration::from_secs(5)));
}

#[test]
fn auth_forms_and_failures() {
    let mut c = conn();
    rt(&mut c, &["AUTH", "wrong"], WRONGPASS);
    rt(&mut c, &["AUTH", "app", "wrong"], WRONGPASS);
    rt(&mut c, &["AUTH", "nosuch", "apppass"], WRONGPASS);
    rt(&mut c, &["AUTH", "gone", "gonepass"], WRONGPASS); // `off`
    rt(&mut c, &["AUTH", "a", "b", "c"], b"-ERR syntax error\r\n");
    rt(&mut c, &["GET", &app_key("x")], NOAUTH);
    // `AUTH <password>` is user `default`.
    rt(&mut c, &["AUTH", "defpass"], OK);
    rt(&mut c, &["ACL", "WHOAMI"], &bulk("default"));
    rt(&mut c, &["PING"], b"+PONG\r\n");
    login(&mut c, "app", "apppass"); // password_sha256
    rt(&mut c, &["ACL", "WHOAMI"], &bulk("app"));
    // A failed AUTH keeps the current user, as in Redis.
    rt(&mut c, &["AUTH", "app", "wrong"], WRONGPASS);
    rt(&mut c, &["ACL", "WHOAMI"], &bulk("app"));
    login(&mut c, "reader", "readerpass"); // password from ${ACL_TEST_READER_PW}
    rt(&mut c, &["ACL", "WHOAMI"], &bulk("reader"));
    // RESET goes back to `default`, which needs a password here.
    rt(&mut c, &["RESET"], b"+RESET\r\n");
    rt(&mut c, &["GET", &app_key("x")], NOAUTH);
}

#[test]
fn hello_auth() {
    let mut c = conn();
    rt(&mut c, &["HELLO", "2", "AUTH", "app", "wrong"], WRONGPASS);
    rt(
        &mut c,
        &["HELLO", "2", "AUTH", "app"],
        b"-ERR Syntax error in HELLO option 'AUTH'\r\n",
    );
    rt(
        &mut c,
        &["HELLO", "4", "AUTH", "app", "apppass"],
        b"-NOPROTO unsupported protocol version\r\n",
    );
    // A failed HELLO 3 AUTH neither authenticates nor switches the protocol.
    rt(&mut c, &["HELLO", "3", "AUTH", "app", "wrong"], WRONGPASS);
    rt(&mut c, &["CLIENT", "GETNAME"], NOAUTH);
    rt(&mut c, &["ACL", "WHOAMI"], NOAUTH);
    assert!(c.send_command(&[b"HELLO", b"2", b"AUTH", b"app", b"apppass", b"SETNAME", b"worker1"]));
    let reply = c.read_reply().expect("HELLO reply");
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.starts_with("*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n"),
        "{text}"
    );
    assert!(text.contains("$5\r\nproto\r\n:2\r\n"), "{text}");
    rt(&mut c, &["ACL", "WHOAMI"], &bulk("app"));
    rt(&mut c, &["CLIENT", "GETNAME"], &bulk("worker1"));
    assert!(c.send_command(&[b"CLIENT", b"INFO"]));
    let info = String::from_utf8_lossy(&c.read_reply().unwrap()).into_owned();
    assert!(info.contains(" name=worker1 "), "{info}");
    assert!(info.contains(" user=app "), "{info}");
    // A bad name after a good AUTH: the error, yet authenticated (Redis 7.0.15 does the same).
    rt(&mut c, &["RESET"], b"+RESET\r\n");
    rt(
        &mut c,
        &[
            "HELLO",
            "2",
            "AUTH",
            "reader",
            "readerpass",
            "SETNAME",
            "bad name",
        ],
        b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
    );
    rt(&mut c, &["ACL", "WHOAMI"], &bulk("reader"));
    // The same with HELLO 3: authenticated, yet still RESP2 (the protocol switches last).
    rt(&mut c, &["RESET"], b"+RESET\r\n");
    rt(
        &mut c,
        &[
            "HELLO", "3", "AUTH", "app", "apppass", "SETNAME", "bad name",
        ],
        b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
    );
    rt(&mut c, &["CLIENT", "GETNAME"], b"$-1\r\n");
    // HELLO 3 AUTH: a RESP3 map, and RESP3 from then on.
    assert!(c.send_command(&[b"HELLO", b"3", b"AUTH", b"app", b"apppass"]));
    let text = String::from_utf8_lossy(&c.read_reply().expect("HELLO reply")).into_owned();
    assert!(text.starts_with("%7\r\n$6\r\nserver\r\n"), "{text}");
    assert!(text.contains("$5\r\nproto\r\n:3\r\n"), "{text}");
    rt(&mut c, &["GET", &app_key("never-set")], b"_\r\n");
    rt(&mut c, &["GET", &other_key("k")], NOPERM_KEY);
}

#[test]
fn key_command_and_channel_permissions() {
    let mut c = conn();
    login(&mut c, "app", "apppass");
    let (k, other) = (app_key("k"), other_key("k"));
    rt(&mut c, &["SET", &k, "v"], OK);
    rt(&mut c, &["GET", &k], &bulk("v"));
    rt(&mut c, &["GET", &other], NOPERM_KEY);
    rt(&mut c, &["SET", &other, "v"], NOPERM_KEY);
    rt(&mut c, &["FLUSHALL"], &noperm_command("flushall"));
    rt(&mut c, &["KEYS", "*"], &noperm_command("keys"));
    rt(
        &mut c,
        &["CONFIG", "GET", "save"],
        &noperm_command("config|get"),
    );
    rt(&mut c, &["INFO"], &noperm_command("info"));
    rt(&mut c, &["PUBLISH", "news:today", "hi"], b":0\r\n");
    rt(&mut c, &["PUBLISH", "sport:today", "hi"], NOPERM_CHANNEL);
    // Channel rules apply to subscriptions too (patterns must match a rule literally).
    rt(&mut c, &["SUBSCRIBE", "sport:today"], NOPERM_CHANNEL);
    rt(&mut c, &["PSUBSCRIBE", "news:*:x"], NOPERM_CHANNEL);
    let mut s = conn();
    login(&mut s, "app", "apppass");
    rt(
        &mut s,
        &["SUBSCRIBE", "news:today"],
        b"*3\r\n$9\r\nsubscribe\r\n$10\r\nnews:today\r\n:1\r\n",
    );
    // Receivers on the node PUBLISH went to: 0 or 1, depending on where each landed.
    c.send_command(&[b"PUBLISH", b"news:today", b"hello"]);
    assert!(c.read_line().unwrap().starts_with(b":"));
    assert_eq!(
        s.read_reply().unwrap(),
        b"*3\r\n$7\r\nmessage\r\n$10\r\nnews:today\r\n$5\r\nhello\r\n".to_vec()
    );
    // ACL subcommands other than WHOAMI: refused by category first, as Redis would...
    rt(&mut c, &["ACL", "LIST"], &noperm_command("acl|list"));
    // ...and by the proxy when the user may run them.
    rt(
        &mut c,
        &["ACL", "CAT"],
        b"-ERR slotgate: ACL CAT is not available through the proxy; users are configured in slotgate's config file\r\n",
    );

    // Split commands are checked once, on the whole line: one forbidden key refuses all, and
    // nothing is written.
    let (a, b) = (app_key("split-a"), app_key("split-b{x}"));
    assert_ne!(
        slotgate_cluster::slot(a.as_bytes()),
        slotgate_cluster::slot(b.as_bytes())
    );
    rt(&mut c, &["MSET", &a, "1", &other, "2", &b, "3"], NOPERM_KEY);
    rt(&mut c, &["MGET", &a, &other], NOPERM_KEY);
    rt(&mut c, &["DEL", &k, &other], NOPERM_KEY);
    rt(&mut c, &["EXISTS", &a, &other], NOPERM_KEY);
    assert_eq!(
        shared_cluster().get(&a),
        None,
        "nothing of a refused MSET may run"
    );
    assert_eq!(shared_cluster().get(&b), None);
    assert_eq!(
        shared_cluster().get(&k).as_deref(),
        Some("v"),
        "a refused DEL deletes nothing"
    );
    rt(&mut c, &["MSET", &a, "1", &b, "3"], OK);
    rt(&mut c, &["MGET", &a, &b], b"*2\r\n$1\r\n1\r\n$1\r\n3\r\n");
    rt(&mut c, &["DEL", &a, &b, &k], b":3\r\n");

    // `%R~*`: reads anywhere, writes nowhere.
    let mut r = conn();
    login(&mut r, "reader", "readerpass");
    rt(&mut r, &["GET", &other], NIL);
    rt(&mut r, &["EXISTS", &other], b":0\r\n");
    rt(&mut r, &["SET", &other, "v"], NOPERM_KEY);
    rt(&mut r, &["DEL", &other], NOPERM_KEY);
    rt(&mut r, &["MSET", &other, "1"], NOPERM_KEY);
    assert_eq!(shared_cluster().get(&other), None);
    // `default` here has every permission.
    let mut d = conn();
    rt(&mut d, &["AUTH", "defpass"], OK);
    rt(&mut d, &["SET", &other, "v"], OK);
    rt(&mut d, &["DEL", &other], b":1\r\n");
}

fn cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(proxy().port().to_string())
        .args(args)
        .output()
        .expect("redis-cli not found: apt-get install redis-tools");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[test]
fn real_clients_log_in() {
    let k = app_key("cli");
    assert_eq!(
        cli(&["--user", "app", "--pass", "apppass", "SET", &k, "1"]),
        "OK"
    );
    assert_eq!(cli(&["--user", "app", "--pass", "apppass", "GET", &k]), "1");
    assert_eq!(
        cli(&[
            "--user",
            "app",
            "--pass",
            "apppass",
            "GET",
            &other_key("cli")
        ]),
        "NOPERM this user has no permissions to access one of the keys used as arguments"
    );
    assert_eq!(cli(&["-a", "defpass", "--no-auth-warning", "PING"]), "PONG");
    assert_eq!(
        cli(&["-a", "defpass", "--no-auth-warning", "ACL", "WHOAMI"]),
        "default"
    );
    let wrong = cli(&[
        "--user",
        "app",
        "--pass",
        "nope",
        "--no-auth-warning",
        "PING",
    ]);
    assert!(wrong.contains("NOAUTH"), "{wrong}");

    let url = format!("redis://app:apppass@127.0.0.1:{}/", proxy().port());
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let who: String = redis::cmd("ACL").arg("WHOAMI").query(&mut c).unwrap();
    assert_eq!(who, "app");
    let _: () = redis::cmd("SET").arg(&k).arg("2").query(&mut c).unwrap();
    let v: String = redis::cmd("GET").arg(&k).query(&mut c).unwrap();
    assert_eq!(v, "2");
    let err = redis::cmd("GET")
        .arg(other_key("rs"))
        .query::<Option<String>>(&mut c)
        .unwrap_err();
    assert!(err.to_string().to_uppercase().contains("NOPERM"), "{err}");
    let _: () = redis::cmd("DEL").arg(&k).query(&mut c).unwrap();

    let bad = format!("redis://app:nope@127.0.0.1:{}/", proxy().port());
    let Err(err) = redis::Client::open(bad).unwrap().get_connection() else {
        panic!("a wrong password in the URL must fail the connection");
    };
    // redis-rs turns the WRONGPASS reply into its own authentication error.
    assert_eq!(err.kind(), redis::ErrorKind::AuthenticationFailed, "{err}");
}

/// Time from sending `args` to its reply.
fn timed(c: &mut RawConn, args: &[&str], expected: &[u8]) -> Duration {
    let start = Instant::now();
    rt(c, args, expected);
    start.elapsed()
}

#[test]
fn repeated_failures_are_delayed_without_slowing_others() {
    const DELAY: Duration = Duration::from_millis(400);
    let proxy = with_users().auth_failure_delay(DELAY).spawn();
    let mut attacker = RawConn::connect(proxy.port());
    for i in 0..3 {
        let t = timed(&mut attacker, &["AUTH", "app", "guess"], WRONGPASS);
        assert!(t < DELAY / 2, "failure {} took {t:?}", i + 1);
    }
    // From the 4th attempt on, every AUTH reply waits (right or wrong)...
    for i in 3..5 {
        let t = timed(&mut attacker, &["AUTH", "app", "guess"], WRONGPASS);
        assert!(t >= DELAY, "failure {} came back after {t:?}", i + 1);
    }
    // ...delays of pipelined guesses queue up: one answer per delay...
    let start = Instant::now();
    assert!(attacker.send_command(&[b"AUTH", b"app", b"guess"]));
    assert!(attacker.send_command(&[b"AUTH", b"app", b"guess"]));
    assert!(attacker.send_command(&[b"PING"]));
    attacker.expect(WRONGPASS);
    attacker.expect(WRONGPASS);
    attacker.expect(NOAUTH);
    assert!(start.elapsed() >= DELAY * 2, "{:?}", start.elapsed());
    // ...and meanwhile other clients are not slowed (the worker does not block).
    let mut bystander = RawConn::connect(proxy.port());
    login(&mut bystander, "app", "apppass");
    assert!(attacker.send_command(&[b"AUTH", b"app", b"guess"]));
    for _ in 0..5 {
        let t = timed(&mut bystander, &["GET", &app_key("bystander")], NIL);
        assert!(t < DELAY / 4, "a bystander's GET took {t:?}");
    }
    attacker.expect(WRONGPASS);
    // The right password, after the failures, waits too, then resets the count.
    let t = timed(&mut attacker, &["AUTH", "app", "apppass"], OK);
    assert!(t >= DELAY, "{t:?}");
    let t = timed(&mut attacker, &["AUTH", "app", "guess"], WRONGPASS);
    assert!(t < DELAY / 2, "{t:?}");
    // Failures are logged with the address and a configured user name, never the password.
    let log = strip_ansi(&proxy.log());
    assert!(log.contains("client authentication failed"), "{log}");
    assert!(log.contains("user=\"app\""), "{log}");
    assert!(!log.contains("guess"), "{log}");
}

/// `text` without terminal colour sequences (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Replaces the file `proxy` runs (then SIGHUP it).
fn write_config(proxy: &Slotgate, config: &ProxyConfig) {
    std::fs::write(proxy.config_path(), config.yaml()).unwrap();
}

#[test]
fn sighup_reloads_users_while_clients_stay_connected() {
    let p = unique_key_prefix("acl-reload");
    // Every version listens on the same port.
    let base = ProxyConfig::new(&shared_cluster().seeds());
    let v1 = base
        .clone()
        .user("app", "v1pass", &format!("+@all ~{p}a:*"))
        .user("temp", "temppass", "+@all ~*")
        .user("switch", "switchpass", "+@all ~*");
    let proxy = v1.spawn();
    let (a, b) = (format!("{p}a:1"), format!("{p}b:1"));

    let mut app = RawConn::connect(proxy.port());
    login(&mut app, "app", "v1pass");
    rt(&mut app, &["SET", &a, "1"], OK);
    rt(&mut app, &["SET", &b, "1"], NOPERM_KEY);
    let mut temp = RawConn::connect(proxy.port());
    login(&mut temp, "temp", "temppass");
    let mut switch = RawConn::connect(proxy.port());
    login(&mut switch, "switch", "switchpass");

    // v2: app may write `b:` too and has a new password; temp is gone; switch is off.
    let v2 = base
        .clone()
        .user("app", "v2pass", &format!("+@all ~{p}a:* ~{p}b:*"))
        .user("switch", "switchpass", "off +@all ~*");
    write_config(&proxy, &v2);
    assert!(proxy.signal("HUP"));
    assert_eventually!(
        proxy.log().contains("users reloaded"),
        Duration::from_secs(10),
        "no reload in the log:\n{}",
        proxy.log()
    );
    // Removed and disabled users' connections close without sending anything.
    assert!(
        temp.closed_within(Duration::from_secs(5)),
        "temp's connection stayed open"
    );
    assert!(
        switch.closed_within(Duration::from_secs(5)),
        "switch's connection stayed open"
    );
    // app stays connected, with the new rules from its next command on.
    rt(&mut app, &["SET", &b, "2"], OK);
    rt(&mut app, &["ACL", "WHOAMI"], &bulk("app"));
    // The password change applies to new AUTHs only.
    let mut fresh = RawConn::connect(proxy.port());
    rt(&mut fresh, &["AUTH", "app", "v1pass"], WRONGPASS);
    login(&mut fresh, "app", "v2pass");
    rt(&mut fresh, &["AUTH", "temp", "temppass"], WRONGPASS);
    rt(&mut fresh, &["AUTH", "switch", "switchpass"], WRONGPASS);

    // A broken file: logged, the v2 users stay.
    write_config(&proxy, &base.clone().user("app", "v3", "+@all +nosuch"));
    assert!(proxy.signal("HUP"));
    assert_eventually!(
        proxy
            .log()
            .contains("cannot load the configuration; keeping the old settings"),
        Duration::from_secs(10),
        "{}",
        proxy.log()
    );
    assert!(
        proxy.log().contains("+nosuch"),
        "the log names the bad rule"
    );
    rt(&mut app, &["SET", &b, "3"], OK);
    rt(&mut app, &["DEL", &a, &b], b":2\r\n");
    let mut after = RawConn::connect(proxy.port());
    rt(&mut after, &["AUTH", "app", "v3"], WRONGPASS);
    login(&mut after, "app", "v2pass");
    // Turning authentication off is refused at reload (needs a restart).
    write_config(&proxy, &base);
    assert!(proxy.signal("HUP"));
    assert_eventually!(
        proxy.log().contains("turn authentication off"),
        Duration::from_secs(10),
        "{}",
        proxy.log()
    );
    rt(&mut app, &["GET", &b], NIL);
    let mut last = RawConn::connect(proxy.port());
    rt(&mut last, &["GET", &b], NOAUTH);
}

#[test]
fn metrics_count_every_refusal() {
    let proxy = with_users()
        .admin()
        .auth_failure_delay(Duration::ZERO)
        .spawn();
    let count = |reason: &str| {
        proxy.scrape().get(&format!(
            "slotgate_auth_failures_total{{reason=\"{reason}\"}}"
        ))
    };
    let before = [count("wrongpass"), count("noauth"), count("noperm")];
    let mut c = RawConn::connect(proxy.port());
    for _ in 0..5 {
        rt(&mut c, &["AUTH", "app", "wrong"], WRONGPASS); // delay 0: none are held
    }
    rt(&mut c, &["HELLO", "2", "AUTH", "nosuch", "x"], WRONGPASS);
    rt(&mut c, &["GET", "x"], NOAUTH);
    rt(&mut c, &["HELLO"], HELLO_NOAUTH);
    login(&mut c, "app", "apppass");
    rt(&mut c, &["FLUSHALL"], &noperm_command("flushall"));
    rt(&mut c, &["GET", &other_key("m")], NOPERM_KEY);
    rt(&mut c, &["PUBLISH", "sport", "x"], NOPERM_CHANNEL);
    let after = [count("wrongpass"), count("noauth"), count("noperm")];
    assert_eq!(after[0] - before[0], 6.0, "wrongpass");
    assert_eq!(after[1] - before[1], 2.0, "noauth");
    assert_eq!(after[2] - before[2], 3.0, "noperm");
}

#[test]
fn without_users_everyone_is_default() {
    let proxy = ProxyConfig::new(&shared_cluster().seeds()).spawn();
    let mut c = RawConn::connect(proxy.port());
    rt(&mut c, &["ACL", "WHOAMI"], &bulk("default"));
    rt(
        &mut c,
        &["AUTH", "x"],
        b"-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n",
    );
    rt(&mut c, &["AUTH", "default", "anything"], OK);
    rt(&mut c, &["AUTH", "app", "x"], WRONGPASS);
    rt(
        &mut c,
        &["ACL", "SETUSER", "x", "on"],
        b"-ERR slotgate: ACL SETUSER is not available through the proxy; users are configured in slotgate's config file\r\n",
    );
    assert!(c.send_command(&[b"CLIENT", b"INFO"]));
    let info = String::from_utf8_lossy(&c.read_reply().unwrap()).into_owned();
    assert!(info.contains(" user=default "), "{info}");
}

#[test]
fn check_config_masks_user_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.yaml");
    // Checked, never run: the addresses need not exist.
    let config = ProxyConfig::new(&["127.0.0.1:7000".to_string()]).listen_port(6390);
    let with_app = |password: &str, rules: &str| config.clone().user("app", password, rules);
    std::fs::write(&file, with_app("clear-text-secret", "+@all ~app:*").yaml()).unwrap();
    let out = Command::new(slotgate_tests::slotgate_bin())
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains(
            "users:\n  - name: \"app\"\n    password_sha256: \"********\"\n    rules: \"+@all ~app:*\"\n"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("clear-text-secret"), "{stdout}");

    // A bad rule: exit 1, the message names the user and the rule.
    std::fs::write(&file, with_app("x", "+@all +nosuch").yaml()).unwrap();
    let out = Command::new(slotgate_tests::slotgate_bin())
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("users[0] (\"app\")") && stderr.contains("'+nosuch'"),
        "{stderr}"
    );
}

#[test]
fn users_from_a_redis_acl_file_are_reloaded_on_sighup() {
    let p = unique_key_prefix("acl-file");
    let file = std::env::temp_dir().join(format!("slotgate-acl-file-{}.acl", std::process::id()));
    std::fs::write(
        &file,
        format!("# written like redis.conf's aclfile\nuser alice on >wonderland ~{p}a:* +@all\nuser off-user >x ~* +@all\n"),
    )
    .unwrap();
    let config = ProxyConfig::new(&shared_cluster().seeds())
        .user("app", "apppass", "+@all ~*")
        .raw(&format!("users_file: \"{}\"\n", file.display()));
    let proxy = config.spawn();
    let a = format!("{p}a:1");
    let mut alice = RawConn::connect(proxy.port());
    login(&mut alice, "alice", "wonderland");
    rt(&mut alice, &["SET", &a, "1"], OK);
    rt(&mut alice, &["SET", "elsewhere", "1"], NOPERM_KEY);
    let mut off = RawConn::connect(proxy.port());
    off.roundtrip(&[b"AUTH", b"off-user", b"x"], WRONGPASS);
    // New password for alice, a new user bob; SIGHUP.
    std::fs::write(
        &file,
        format!("user alice on >looking-glass ~{p}a:* +@all\nuser bob on >builder ~* +@read\n"),
    )
    .unwrap();
    assert!(proxy.signal("HUP"));
    assert_eventually!(
        proxy.log().contains("users reloaded"),
        Duration::from_secs(10),
        "no reload in the log:\n{}",
        proxy.log()
    );
    let mut c = RawConn::connect(proxy.port());
    c.roundtrip(&[b"AUTH", b"alice", b"wonderland"], WRONGPASS);
    login(&mut c, "alice", "looking-glass");
    let mut bob = RawConn::connect(proxy.port());
    login(&mut bob, "bob", "builder");
    rt(&mut bob, &["GET", &a], b"$1\r\n1\r\n");
    // A broken file is refused and the users stay.
    std::fs::write(&file, "user carol on >x ~* +@all\nnot a user line\n").unwrap();
    assert!(proxy.signal("HUP"));
    assert_eventually!(
        proxy.log().contains(&format!("{}:2", file.display())),
        Duration::from_secs(10),
        "the error does not name the file and line:\n{}",
        proxy.log()
    );
    let mut again = RawConn::connect(proxy.port());
    login(&mut again, "bob", "builder");
    let _ = std::fs::remove_file(&file);
}
