//! Client-facing TLS against a real cluster: redis-cli, redis-rs (rustls) and
//! redis-benchmark over TLS; a plaintext side listener; mutual TLS accepted and refused; a
//! handshake deadline; certificate reload on SIGHUP without dropping connections.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use slotgate_tests::admin::scrape;
use slotgate_tests::tls::TestPki;
use slotgate_tests::{
    assert_eventually, free_port, redis_benchmark_with_timeout, shared_cluster, ProxyConfig,
    Slotgate,
};

struct TlsProxy {
    proxy: Slotgate,
    admin: SocketAddr,
    tls_port: u16,
    plain_port: u16,
}

/// `listen` on TLS with `pki`'s certificate (mutual TLS with `mtls`), `plaintext_listen`
/// beside it on `plain_port`, and an admin port.
fn tls_config(pki: &TestPki, mtls: bool, plain_port: u16) -> ProxyConfig {
    ProxyConfig::new(&shared_cluster().seeds())
        .tls(pki, mtls)
        .plaintext_listen(plain_port)
        .admin()
}

/// slotgate started with `config` from [`tls_config`], not waiting for it: the kit's
/// readiness probe speaks plaintext.
fn spawn_unready(config: &ProxyConfig) -> (Slotgate, SocketAddr) {
    let proxy = config.builder().wait_ready(false).spawn();
    let admin = proxy.admin_addr().expect("admin port");
    (proxy, admin)
}

/// slotgate with `listen` on TLS, `plaintext_listen` beside it, and an admin port.
fn spawn_tls(pki: &TestPki, mtls: bool) -> TlsProxy {
    let plain_port = free_port();
    // Wait on the plaintext listener instead.
    let (proxy, admin) = spawn_unready(&tls_config(pki, mtls, plain_port));
    assert_eventually!(
        redis_cli_plain(plain_port, &["PING"]) == "PONG",
        Duration::from_secs(10),
        "slotgate not ready; log:\n{}",
        proxy.log()
    );
    TlsProxy {
        tls_port: proxy.port(),
        proxy,
        admin,
        plain_port,
    }
}

fn run_cli(args: &[String]) -> (bool, String) {
    let out = Command::new("redis-cli")
        .args(args)
        .output()
        .expect("redis-cli on PATH");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_string())
}

fn redis_cli_plain(port: u16, cmd: &[&str]) -> String {
    let mut args = vec!["-p".to_string(), port.to_string()];
    args.extend(cmd.iter().map(|s| s.to_string()));
    run_cli(&args).1
}

fn redis_cli_tls(pki: &TestPki, port: u16, client_cert: bool, cmd: &[&str]) -> (bool, String) {
    let mut args = vec![
        "-h".to_string(),
        "127.0.0.1".to_string(),
        "-p".to_string(),
        port.to_string(),
    ];
    args.extend(pki.cli_args(client_cert));
    args.extend(cmd.iter().map(|s| s.to_string()));
    run_cli(&args)
}

fn tls_errors(admin: SocketAddr) -> f64 {
    scrape(admin).get(r#"slotgate_client_connections_total{result="tls_error"}"#)
}

#[test]
fn redis_cli_and_redis_rs_work_over_tls() {
    let pki = TestPki::generate();
    let p = spawn_tls(&pki, false);

    assert_eq!(
        redis_cli_tls(&pki, p.tls_port, false, &["SET", "tls:cli", "v1"]),
        (true, "OK".into())
    );
    assert_eq!(
        redis_cli_tls(&pki, p.tls_port, false, &["GET", "tls:cli"]),
        (true, "v1".into())
    );
    // The plaintext side listener reaches the same data.
    assert_eq!(redis_cli_plain(p.plain_port, &["GET", "tls:cli"]), "v1");

    // redis-rs with rustls, trusting the test CA.
    let client = redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{}/", p.tls_port),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(&pki.ca).unwrap()),
        },
    )
    .unwrap();
    let mut con = client.get_connection().unwrap();
    let keys: Vec<String> = (0..50).map(|i| format!("tls:rs:{i}")).collect();
    let mut mset = redis::cmd("MSET");
    for (i, k) in keys.iter().enumerate() {
        mset.arg(k).arg(i);
    }
    mset.query::<()>(&mut con).unwrap();
    let got: Vec<i64> = redis::cmd("MGET").arg(&keys).query(&mut con).unwrap();
    assert_eq!(got, (0..50).collect::<Vec<i64>>());

    // A client that does not trust the CA is refused by its own verifier; one that speaks
    // plaintext to the TLS port is refused by slotgate and counted.
    let before = tls_errors(p.admin);
    let (ok, out) = run_cli(&["-p".into(), p.tls_port.to_string(), "PING".into()]);
    assert!(
        !ok || out != "PONG",
        "plaintext PING on the TLS port answered: {out}"
    );
    assert_eventually!(
        tls_errors(p.admin) > before,
        Duration::from_secs(5),
        "plaintext on the TLS port not counted as tls_error"
    );
    let log = p.proxy.log();
    assert!(log.contains("TLS handshake failed"), "{log}");
    assert!(
        log.contains("the client spoke plaintext to this TLS port"),
        "{log}"
    );
}

#[test]
fn redis_benchmark_over_tls_is_clean() {
    let pki = TestPki::generate();
    let p = spawn_tls(&pki, false);
    let ca = pki.ca.display().to_string();
    let out = redis_benchmark_with_timeout(
        p.tls_port,
        &[
            "--tls", "--cacert", &ca, "-t", "set,get", "-n", "20000", "-c", "10", "-P", "8", "-r",
            "10000",
        ],
        Duration::from_secs(120),
    );
    out.assert_clean();
    let s = scrape(p.admin);
    assert!(s.get(r#"slotgate_commands_total{command="get",result="ok"}"#) >= 20000.0);
}

#[test]
fn mutual_tls_accepts_signed_clients_and_refuses_others() {
    let pki = TestPki::generate();
    let p = spawn_tls(&pki, true);

    assert_eq!(
        redis_cli_tls(&pki, p.tls_port, true, &["PING"]),
        (true, "PONG".into())
    );
    let before = tls_errors(p.admin);
    // No client certificate.
    let (_, out) = redis_cli_tls(&pki, p.tls_port, false, &["PING"]);
    assert_ne!(out, "PONG", "a client without a certificate got through");
    // A certificate from a CA slotgate does not trust.
    let mut args = vec![
        "-h".to_string(),
        "127.0.0.1".into(),
        "-p".into(),
        p.tls_port.to_string(),
        "--tls".into(),
        "--cacert".into(),
        pki.ca.display().to_string(),
        "--cert".into(),
        pki.rogue_cert.display().to_string(),
        "--key".into(),
        pki.rogue_key.display().to_string(),
    ];
    args.push("PING".into());
    let (_, out) = run_cli(&args);
    assert_ne!(out, "PONG", "a client with a rogue certificate got through");
    assert_eventually!(
        tls_errors(p.admin) >= before + 2.0,
        Duration::from_secs(5),
        "refused handshakes not counted"
    );

    // redis-rs presenting the signed client certificate.
    let client = redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{}/", p.tls_port),
        redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: std::fs::read(&pki.client_cert).unwrap(),
                client_key: std::fs::read(&pki.client_key).unwrap(),
            }),
            root_cert: Some(std::fs::read(&pki.ca).unwrap()),
        },
    )
    .unwrap();
    let mut con = client.get_connection().unwrap();
    redis::cmd("SET")
        .arg("mtls:k")
        .arg("v")
        .query::<()>(&mut con)
        .unwrap();
    let v: String = redis::cmd("GET").arg("mtls:k").query(&mut con).unwrap();
    assert_eq!(v, "v");
}

#[test]
fn a_silent_client_is_dropped_at_the_handshake_deadline() {
    let pki = TestPki::generate();
    let plain_port = free_port();
    let config =
        tls_config(&pki, false, plain_port).tls_handshake_timeout(Duration::from_millis(300));
    let (proxy, admin) = spawn_unready(&config);
    let tls_port = proxy.port();
    assert_eventually!(
        redis_cli_plain(plain_port, &["PING"]) == "PONG",
        Duration::from_secs(10)
    );
    let before = tls_errors(admin);
    let mut silent = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let n = std::io::Read::read(&mut silent, &mut buf).unwrap_or(0);
    let took = start.elapsed();
    assert_eq!(n, 0, "expected the connection to be closed");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "closed after {took:?}, handshake_timeout is 300ms"
    );
    assert_eventually!(tls_errors(admin) > before, Duration::from_secs(5));
    drop(proxy);
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    let pki = TestPki::generate();
    let p = spawn_tls(&pki, false);

    // An established TLS client.
    let client = redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{}/", p.tls_port),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(&pki.ca).unwrap()),
        },
    )
    .unwrap();
    let mut con = client.get_connection().unwrap();
    redis::cmd("SET")
        .arg("reload:k")
        .arg("1")
        .query::<()>(&mut con)
        .unwrap();
    let old_subject = served_subject(&pki, p.tls_port);
    assert!(old_subject.contains("slotgate server"), "{old_subject}");

    // A broken certificate file: the reload is refused, the old certificate stays.
    let good = std::fs::read(&pki.server_cert).unwrap();
    std::fs::write(&pki.server_cert, b"-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    assert!(p.proxy.signal("HUP"));
    assert_eventually!(
        p.proxy.log().contains("reload refused"),
        Duration::from_secs(5),
        "no log line for the refused reload:\n{}",
        p.proxy.log()
    );
    assert!(served_subject(&pki, p.tls_port).contains("slotgate server"));
    std::fs::write(&pki.server_cert, good).unwrap();

    // A new certificate: new handshakes get it, the old connection keeps working.
    let (cert, key) = pki.issue_server("renewed server");
    std::fs::copy(&cert, &pki.server_cert).unwrap();
    std::fs::copy(&key, &pki.server_key).unwrap();
    assert!(p.proxy.signal("HUP"));
    assert_eventually!(
        served_subject(&pki, p.tls_port).contains("renewed server"),
        Duration::from_secs(5),
        "new handshakes still get the old certificate"
    );
    let v: i64 = redis::cmd("INCR").arg("reload:k").query(&mut con).unwrap();
    assert_eq!(v, 2, "the established connection kept working");
}

/// The subject of the certificate a fresh TLS handshake on `port` gets, as openssl prints it.
fn served_subject(pki: &TestPki, port: u16) -> String {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-CAfile",
            &pki.ca.display().to_string(),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl on PATH");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or("")
        .to_string()
}
