//! The binary's command line (docs/cli.md): `keyslot`, `check-config`, `--version`, a missing
//! config, and a clean exit on SIGTERM with a client mid-pipeline.

use std::process::Command;
use std::time::{Duration, Instant};

use slotgate_tests::raw::RawConn;
use slotgate_tests::{shared_cluster, slotgate_bin, ProxyConfig};

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(slotgate_bin())
        .args(args)
        .output()
        .expect("run slotgate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn keyslot_prints_slots() {
    let (ok, out, _) = run(&["keyslot", "foo", "{user1000}.following", "123456789"]);
    assert!(ok);
    assert_eq!(
        out,
        "foo 12182\n{user1000}.following 3443\n123456789 12739\n"
    );
}

#[test]
fn check_config_validates_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "listen: \"127.0.0.1:6380\"\nupstream:\n  seeds: [\"127.0.0.1:7000\"]\n  password: hunter2\n").unwrap();
    let (ok, out, err) = run(&["check-config", good.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("listen: \"127.0.0.1:6380\""), "{out}");
    assert!(!out.contains("hunter2"), "secret printed: {out}");

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "listen: \"127.0.0.1:6380\"\nupstream:\n  seeds: [\"127.0.0.1:7000\"]\nlimits:\n  max_pipelin: 5\n").unwrap();
    let (ok, _, err) = run(&["check-config", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("max_pipelin"), "{err}");

    // config/dev.yaml names the demo's certificates relative to the repository root:
    // check-config loads them, so give it a directory that has them.
    let dev = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/dev.yaml");
    let (ok, _, err) = run(&["check-config", dev]);
    assert!(
        !ok && err.contains(".demo/tls/server.crt"),
        "missing cert not reported: {err}"
    );
    let pki = slotgate_tests::tls::TestPki::generate();
    let tls_dir = dir.path().join(".demo/tls");
    std::fs::create_dir_all(&tls_dir).unwrap();
    std::fs::copy(&pki.server_cert, tls_dir.join("server.crt")).unwrap();
    std::fs::copy(&pki.server_key, tls_dir.join("server.key")).unwrap();
    let out = Command::new(slotgate_bin())
        .args(["check-config", dev])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "config/dev.yaml: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A certificate that does not match its key is caught by check-config.
    std::fs::copy(&pki.client_key, tls_dir.join("server.key")).unwrap();
    let out = Command::new(slotgate_bin())
        .args(["check-config", dev])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("TLS"), "{err}");
}

#[test]
fn version_and_missing_config() {
    let (ok, out, _) = run(&["--version"]);
    assert!(ok);
    assert!(out.starts_with("slotgate "), "{out}");
    // The git commit it was built from.
    assert!(out.contains("(commit "), "{out}");
    let out = Command::new(slotgate_bin())
        .env_remove("SLOTGATE_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

#[test]
fn sigterm_exits_cleanly_after_answering_in_flight_commands() {
    let mut proxy = ProxyConfig::new(&shared_cluster().seeds()).spawn();
    let mut conn = RawConn::connect(proxy.port());
    conn.roundtrip(&[b"SET", b"cli:sigterm", b"1"], b"+OK\r\n");
    // A pipeline in flight when the signal arrives is answered in full.
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for _ in 0..200 {
        batch.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$11\r\ncli:sigterm\r\n");
        expected.extend_from_slice(b"$1\r\n1\r\n");
    }
    assert!(conn.send(&batch));
    conn.expect(&expected);
    let started = Instant::now();
    assert!(proxy.sigterm());
    let status = proxy
        .wait_exit(Duration::from_secs(15))
        .expect("slotgate did not exit after SIGTERM");
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        proxy.log()
    );
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        conn.closed_within(Duration::from_secs(2)),
        "idle client connection left open"
    );
}

#[test]
fn json_logs_are_one_object_per_line_and_client_errors_are_rate_limited() {
    let proxy = ProxyConfig::new(&shared_cluster().seeds())
        .log_format("json")
        .spawn();
    // 30 clients break the protocol within a fraction of a second.
    for _ in 0..30 {
        let mut raw = RawConn::connect(proxy.port());
        raw.send(b"*1\r\n$-5\r\n");
        assert!(raw.closed_within(Duration::from_secs(5)));
    }
    assert!(
        slotgate_tests::wait_until(Duration::from_secs(5), || proxy
            .log()
            .contains("client protocol error")),
        "no protocol error logged:\n{}",
        proxy.log()
    );
    let log = proxy.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    let protocol: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("client protocol error"))
        .collect();
    assert!(
        (1..=3).contains(&protocol.len()),
        "{} protocol error lines for 30 errors in about a second:\n{log}",
        protocol.len()
    );
}

#[test]
fn config_errors_name_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let dup = write(
        "dup.yaml",
        "listen: \"127.0.0.1:6380\"\nupstream:\n  seeds: [\"a:1\"]\n  seeds: [\"b:2\"]\n",
    );
    let (ok, _, err) = run(&["check-config", dup.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains(&format!("{}:4:3", dup.display())), "{err}");
    assert!(
        !err.contains("<input>") && !err.contains("DuplicateKeyPolicy"),
        "{err}"
    );
    let empty = write("empty.yaml", "# nothing yet\n\n");
    let (ok, _, err) = run(&["check-config", empty.to_str().unwrap()]);
    assert!(!ok && err.contains("the file is empty"), "{err}");
    let cert = write(
        "cert.yaml",
        "listen: \"127.0.0.1:6380\"\ntls:\n  cert: /nonexistent/c.pem\n  key: /nonexistent/k.pem\nupstream:\n  seeds: [\"a:1\"]\n",
    );
    let (ok, _, err) = run(&["check-config", cert.to_str().unwrap()]);
    assert!(
        !ok && err.contains("tls.cert: cannot read /nonexistent/c.pem"),
        "{err}"
    );
}

#[test]
fn sighup_names_the_changed_keys_that_need_a_restart() {
    let config = ProxyConfig::new(&shared_cluster().seeds());
    let proxy = config.spawn();
    let changed = config.clone().upstream_key("op_timeout", "3s");
    std::fs::write(proxy.config_path(), changed.yaml()).unwrap();
    assert!(proxy.signal("HUP"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proxy.log().contains("only after a restart") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = proxy.log();
    assert!(
        log.contains("only after a restart") && log.contains("upstream.op_timeout"),
        "{log}"
    );
}
