//! slotgate in front of a cluster that speaks TLS and wants an ACL user: every node listens on
//! a plaintext port (used only by the kit) and a `tls-port`, the nodes talk TLS to each other
//! (`tls-cluster yes`, `tls-replication yes`), and slotgate is given the TLS ports as seeds,
//! `upstream.tls` and the ACL user `proxy`. Shown here: what Redis 7.0 itself answers over
//! TLS and over plaintext; traffic flows and really goes over TLS as `proxy`; a wrong CA, a
//! wrong server name, a missing client certificate and a wrong password are refused with a
//! log line that says so (the wrong password ends the process); a manual failover and a
//! reshard under load are invisible through the TLS upstream.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use slotgate_tests::admin::http_get;
use slotgate_tests::cluster::ClusterTls;
use slotgate_tests::tls::TestPki;
use slotgate_tests::{
    assert_eventually, redis_benchmark, unique_key_prefix, ClusterOptions, Load, ProxyConfig,
    RedisCluster, Reply, Slotgate,
};

/// The ACL user slotgate uses upstream, as a `user` directive.
const PROXY_USER: &str = "proxy on >secret ~* &* +@all";
/// A second user, used by the wrong-password test so its refusals in `ACL LOG` cannot be
/// mistaken for slotgate's own user's.
const CHECKER_USER: &str = "checker on >right ~* &* +@all";
/// What the wrong-password test gives as `checker`'s password.
const WRONG_PASSWORD: &str = "not-right-7f3a";

/// The TLS cluster shared by the tests that do not change topology.
fn tls_cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        RedisCluster::start(ClusterOptions {
            tls: Some(ClusterTls::new(Arc::new(TestPki::generate()))),
            acl_users: vec![PROXY_USER.to_string(), CHECKER_USER.to_string()],
            ..ClusterOptions::default()
        })
    })
}

/// slotgate in front of the TLS ports of `cluster`, with an admin port, connecting as `user`
/// with `password` over TLS that trusts `ca` (no server name, no client certificate).
fn config(cluster: &RedisCluster, user: &str, password: &str, ca: &Path) -> ProxyConfig {
    ProxyConfig::new(&cluster.tls_seeds())
        .admin()
        .upstream_key("connect_timeout", "1s")
        .upstream_auth(user, password)
        .upstream_tls(ca)
}

/// The usual config for `cluster`: user `proxy`, its CA.
fn proxy_config(cluster: &RedisCluster) -> ProxyConfig {
    let pki = cluster.pki().expect("TLS cluster");
    config(cluster, "proxy", "secret", &pki.ca)
}

/// The `CLIENT LIST` lines of the node on `port` whose user is `user`.
fn client_lines(cluster: &RedisCluster, port: u16, user: &str) -> Vec<String> {
    let list = match cluster.query(port, &["CLIENT", "LIST"]) {
        Ok(reply) => reply.text().expect("CLIENT LIST is a bulk string"),
        Err(e) => panic!("CLIENT LIST on {port}: {e}"),
    };
    let needle = format!(" user={user} ");
    list.lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// `ACL LOG` entries of the node on `port`, each as its field → text pairs.
fn acl_log(cluster: &RedisCluster, port: u16) -> Vec<Vec<(String, String)>> {
    let reply = cluster
        .query(port, &["ACL", "LOG"])
        .unwrap_or_else(|e| panic!("ACL LOG on {port}: {e}"));
    let Reply::Array(Some(entries)) = reply else {
        panic!("ACL LOG on {port}: {reply:?}");
    };
    entries
        .into_iter()
        .map(|entry| {
            let Reply::Array(Some(fields)) = entry else {
                panic!("ACL LOG entry on {port}: {entry:?}");
            };
            fields
                .chunks(2)
                .map(|kv| {
                    let value = match &kv[1] {
                        Reply::Int(i) => i.to_string(),
                        other => other.text().unwrap_or_default(),
                    };
                    (kv[0].text().unwrap_or_default(), value)
                })
                .collect()
        })
        .collect()
}

/// `/readyz` status of `proxy` (0 when the admin port does not answer).
fn readyz(proxy: &Slotgate) -> u16 {
    http_get(proxy.admin_addr().expect("admin port"), "/readyz").map_or(0, |(code, _)| code)
}

/// The ports in `redis-cli CLUSTER SLOTS` output (one field a line; a port follows its IP),
/// sorted, without duplicates.
fn ports_in(output: &str) -> Vec<u16> {
    let lines: Vec<&str> = output.lines().map(str::trim).collect();
    let mut ports: Vec<u16> = lines
        .windows(2)
        .filter(|w| w[0] == "127.0.0.1")
        .filter_map(|w| w[1].parse().ok())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[test]
fn redis_names_the_ports_of_the_transport_asked_over() {
    let cluster = tls_cluster();
    let node = cluster.primaries()[0];
    let mut primaries = cluster.primaries();
    primaries.sort_unstable();
    let mut tls_primaries: Vec<u16> = primaries
        .iter()
        .map(|&p| cluster.tls_port(p).expect("tls port"))
        .collect();
    tls_primaries.sort_unstable();
    let tls_replicas: Vec<u16> = cluster
        .replicas()
        .iter()
        .map(|&p| cluster.tls_port(p).expect("tls port"))
        .collect();
    let without = |ports: Vec<u16>, replicas: &[u16]| -> Vec<u16> {
        ports
            .into_iter()
            .filter(|p| !replicas.contains(p))
            .collect()
    };

    // CLUSTER SLOTS: TLS ports to a TLS client, plaintext ports to a plaintext client.
    // (A replica is listed only once its replication offset is not 0, so only the primaries
    // are certain to be there in a cluster that has seen no writes.)
    let over_tls = ports_in(&cluster.cli_tls(node, &["CLUSTER", "SLOTS"]));
    let over_plain = ports_in(&cluster.cli(node, &["CLUSTER", "SLOTS"]));
    assert_eq!(
        without(over_tls.clone(), &tls_replicas),
        tls_primaries,
        "CLUSTER SLOTS over TLS: {over_tls:?}"
    );
    assert_eq!(
        without(over_plain.clone(), &cluster.replicas()),
        primaries,
        "CLUSTER SLOTS over plaintext: {over_plain:?}"
    );

    // MOVED follows the same rule.
    let owners = cluster.slot_owners();
    let key = (0..)
        .map(|i| format!("moved-probe-{i}"))
        .find(|k| owners[slotgate_cluster::slot(k.as_bytes()) as usize] != node)
        .expect("a key another node owns");
    let owner = owners[slotgate_cluster::slot(key.as_bytes()) as usize];
    let moved_tls = cluster.cli_tls(node, &["GET", &key]).trim().to_string();
    let moved_plain = cluster.cli(node, &["GET", &key]).trim().to_string();
    let tls_owner = cluster.tls_port(owner).expect("tls port");
    assert!(
        moved_tls.starts_with("MOVED ") && moved_tls.ends_with(&format!("127.0.0.1:{tls_owner}")),
        "over TLS: {moved_tls} (owner {owner}, its TLS port {tls_owner}, asked {node})"
    );
    assert!(
        moved_plain.starts_with("MOVED ") && moved_plain.ends_with(&format!("127.0.0.1:{owner}")),
        "over plaintext: {moved_plain}"
    );
}

#[test]
fn serves_across_slots_over_tls_as_the_acl_user() {
    let cluster = tls_cluster();
    let proxy = proxy_config(cluster).spawn();
    assert_eventually!(
        readyz(&proxy) == 200,
        Duration::from_secs(10),
        "/readyz never 200; log:\n{}",
        proxy.log()
    );

    let mut conn = redis::Client::open(proxy.url())
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(5))
        .expect("connect to slotgate");
    let prefix = unique_key_prefix("tls");
    let keys: Vec<String> = (0..300).map(|i| format!("{prefix}{i}")).collect();
    let owners = cluster.slot_owners();
    let mut shards: Vec<u16> = keys
        .iter()
        .map(|k| owners[slotgate_cluster::slot(k.as_bytes()) as usize])
        .collect();
    shards.sort_unstable();
    shards.dedup();
    assert_eq!(shards.len(), 3, "the keys must cover every primary");
    for (i, key) in keys.iter().enumerate() {
        let () = redis::cmd("SET")
            .arg(key)
            .arg(format!("v{i}"))
            .query(&mut conn)
            .unwrap_or_else(|e| panic!("SET {key}: {e}"));
    }
    for (i, key) in keys.iter().enumerate().step_by(37) {
        let got: Option<String> = redis::cmd("GET").arg(key).query(&mut conn).unwrap();
        assert_eq!(got.as_deref(), Some(format!("v{i}").as_str()), "GET {key}");
    }
    let mut mget_keys = keys.clone();
    mget_keys.push(format!("{prefix}missing"));
    let got: Vec<Option<String>> = redis::cmd("MGET").arg(&mget_keys).query(&mut conn).unwrap();
    let want: Vec<Option<String>> = (0..keys.len())
        .map(|i| Some(format!("v{i}")))
        .chain([None])
        .collect();
    assert_eq!(got, want, "MGET across slots");

    let bench = redis_benchmark(
        proxy.port(),
        &[
            "-q", "-n", "20000", "-c", "20", "-P", "8", "-r", "100000", "-t", "set,get",
        ],
    );
    bench.assert_clean();

    // The traffic really is TLS and really is user `proxy`: every connection of user
    // `proxy` on every node arrived on that node's TLS port, and every primary has some.
    let mut per_primary = Vec::new();
    for port in cluster.nodes() {
        let tls_laddr = format!(" laddr=127.0.0.1:{} ", cluster.tls_port(port).unwrap());
        let lines = client_lines(cluster, port, "proxy");
        for line in &lines {
            assert!(
                line.contains(&tls_laddr),
                "a `proxy` connection on node {port} is not on its TLS port: {line}"
            );
        }
        if cluster.primaries().contains(&port) {
            per_primary.push((port, lines.len()));
        }
    }
    assert!(
        per_primary.iter().all(|&(_, n)| n > 0),
        "a primary has no connection from slotgate: {per_primary:?}"
    );
    // And nothing was refused: no ACL LOG entry about user `proxy` anywhere.
    for port in cluster.nodes() {
        let entries: Vec<_> = acl_log(cluster, port)
            .into_iter()
            .filter(|e| e.iter().any(|(k, v)| k == "username" && v == "proxy"))
            .collect();
        assert!(entries.is_empty(), "ACL LOG on {port}: {entries:?}");
    }
    let log = proxy.log();
    for bad in ["WARN", "ERROR"] {
        assert!(!log.contains(bad), "slotgate logged {bad}:\n{log}");
    }
}

/// Starts slotgate with a `config` the cluster must refuse (not waiting for it to answer).
fn start_refused(config: &ProxyConfig) -> Slotgate {
    config.builder().wait_ready(false).spawn()
}

/// Asserts that slotgate, refused by every node, either exits non-zero or never becomes
/// ready, and that its log contains every one of `needles`; returns the log.
fn assert_refused_clearly(mut proxy: Slotgate, needles: &[&str]) -> String {
    // The first map load retries for 5 s before slotgate gives up or carries on without a
    // map.
    let exited = proxy.wait_exit(Duration::from_secs(8));
    let log = proxy.log();
    match exited {
        Some(status) => assert!(!status.success(), "exited 0:\n{log}"),
        None => {
            assert_eventually!(
                readyz(&proxy) == 503,
                Duration::from_secs(5),
                "/readyz is not 503 while the cluster refuses slotgate:\n{}",
                proxy.log()
            );
            // A client gets an error reply rather than a hang, and slotgate keeps trying
            // and keeps not getting in.
            let mut conn = redis::Client::open(proxy.url())
                .unwrap()
                .get_connection_with_timeout(Duration::from_secs(5))
                .expect("connect to slotgate");
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let reply = redis::cmd("GET")
                .arg("k")
                .query::<Option<String>>(&mut conn);
            let err = reply.expect_err("GET served without a slot map");
            assert!(
                matches!(err.code(), Some("CLUSTERDOWN" | "TRYAGAIN")),
                "GET without a slot map: {err}"
            );
            assert_eq!(readyz(&proxy), 503, "became ready:\n{}", proxy.log());
        }
    }
    let log = proxy.log();
    for needle in needles {
        assert!(
            log.contains(needle),
            "slotgate's log does not mention {needle:?}:\n{log}"
        );
    }
    eprintln!(
        "--- slotgate ({}) ---\n{log}",
        if exited.is_some() {
            "exited"
        } else {
            "running"
        }
    );
    log
}

/// A certificate the nodes' TLS refuses is a configuration error: slotgate exits non-zero
/// at start-up (like a wrong password) with a log naming the node and the reason.
fn assert_exits_clearly(mut proxy: Slotgate, needles: &[&str]) -> String {
    let status = proxy.wait_exit(Duration::from_secs(8));
    let log = proxy.log();
    let status = status.unwrap_or_else(|| panic!("still running after 8 s:\n{log}"));
    assert!(!status.success(), "exited 0:\n{log}");
    for needle in needles {
        assert!(
            log.contains(needle),
            "the log does not mention {needle:?}:\n{log}"
        );
    }
    log
}

#[test]
fn wrong_ca_is_refused_clearly() {
    let cluster = tls_cluster();
    let stranger = TestPki::generate();
    let proxy = start_refused(&config(cluster, "proxy", "secret", &stranger.ca));
    let log = assert_exits_clearly(
        proxy,
        &[
            "TLS handshake failed",
            "invalid peer certificate",
            "UnknownIssuer",
        ],
    );
    assert!(
        cluster
            .tls_seeds()
            .iter()
            .any(|seed| log.contains(seed.as_str())),
        "the log names no node:\n{log}"
    );
}

#[test]
fn server_name_mismatch_is_refused_clearly() {
    let cluster = tls_cluster();
    let pki = cluster.pki().unwrap();
    let proxy = start_refused(
        &config(cluster, "proxy", "secret", &pki.ca).upstream_tls_server_name("wrong.example"),
    );
    assert_exits_clearly(
        proxy,
        &[
            "TLS handshake failed",
            "certificate not valid for name \"wrong.example\"",
        ],
    );
}

#[test]
fn wrong_password_is_a_start_up_error() {
    let cluster = tls_cluster();
    let pki = cluster.pki().unwrap();
    let mut proxy = start_refused(&config(cluster, "checker", WRONG_PASSWORD, &pki.ca));
    let status = proxy.wait_exit(Duration::from_secs(10));
    let log = proxy.log();
    let status = status.unwrap_or_else(|| panic!("still running after 10 s:\n{log}"));
    assert!(!status.success(), "exited 0:\n{log}");
    assert!(log.contains("WRONGPASS"), "no WRONGPASS in the log:\n{log}");
    assert!(
        cluster
            .tls_seeds()
            .iter()
            .any(|seed| log.contains(seed.as_str())),
        "the log names no node:\n{log}"
    );
    assert!(
        !log.contains(WRONG_PASSWORD),
        "the log shows the password:\n{log}"
    );
    eprintln!("--- slotgate ({status}) ---\n{log}");
    // The refusal is the cluster's: the nodes logged it.
    let refused = cluster.nodes().iter().any(|&port| {
        acl_log(cluster, port).iter().any(|e| {
            e.iter().any(|(k, v)| k == "username" && v == "checker")
                && e.iter().any(|(k, v)| k == "reason" && v == "auth")
        })
    });
    assert!(refused, "no node has an ACL LOG entry for user checker");
}

#[test]
fn failover_and_reshard_over_tls_upstream_are_invisible() {
    // Its own cluster, and one that insists on client certificates: slotgate presents
    // upstream.tls.cert/key.
    let pki = Arc::new(TestPki::generate());
    let cluster = RedisCluster::start(ClusterOptions {
        tls: Some(ClusterTls::new(Arc::clone(&pki)).auth_clients("yes")),
        acl_users: vec![PROXY_USER.to_string()],
        ..ClusterOptions::default()
    });
    // `default` (the kit's user) may not run CLUSTER SLOTS: a slot-map refresh on a
    // connection that skipped AUTH would be refused and show in ACL LOG.
    for port in cluster.nodes() {
        let reply = cluster.query(port, &["ACL", "SETUSER", "default", "-cluster|slots"]);
        assert_eq!(
            reply,
            Ok(Reply::Status("OK".into())),
            "ACL SETUSER on {port}"
        );
    }
    // Meanwhile, a slotgate without a client certificate is kept out.
    let certless = start_refused(&config(&cluster, "proxy", "secret", &pki.ca));
    let proxy = config(&cluster, "proxy", "secret", &pki.ca)
        .upstream_tls_client_cert(&pki.client_cert, &pki.client_key)
        .spawn();
    assert_eventually!(
        readyz(&proxy) == 200,
        Duration::from_secs(10),
        "/readyz never 200; log:\n{}",
        proxy.log()
    );
    let load = Load::start(&proxy.url(), "tlsfo:");
    assert_eventually!(
        load.acked_count() > 200,
        Duration::from_secs(10),
        "no writes acknowledged through slotgate"
    );

    let before = proxy.scrape();
    let replica = cluster.replicas()[0];
    cluster.failover(replica);
    let acked = load.acked_count();
    assert_eventually!(
        load.acked_count() > acked + 500,
        Duration::from_secs(10),
        "writes stalled after the failover"
    );
    // Slots move between primaries: MIGRATE over TLS, ASK and MOVED through slotgate.
    let primaries = cluster.primaries();
    cluster.reshard(primaries[0], primaries[1], 300);
    let acked = load.acked_count();
    assert_eventually!(
        load.acked_count() > acked + 500,
        Duration::from_secs(10),
        "writes stalled after the reshard"
    );
    let report = load.stop();
    let after = proxy.scrape();
    report.assert_no_errors();
    report.assert_no_lost_writes(&proxy.url());
    let moved =
        |s: &slotgate_tests::admin::Scrape| s.get(r#"slotgate_redirects_total{kind="moved"}"#);
    assert!(moved(&after) > moved(&before), "no MOVED followed");

    // slotgate reached the new primary over TLS as `proxy`.
    let tls_laddr = format!(" laddr=127.0.0.1:{} ", cluster.tls_port(replica).unwrap());
    let lines = client_lines(&cluster, replica, "proxy");
    assert!(
        !lines.is_empty() && lines.iter().all(|l| l.contains(&tls_laddr)),
        "slotgate's connections to the new primary {replica}: {lines:?}"
    );
    // Nothing was refused, and every CLUSTER SLOTS came on an authenticated connection.
    for port in cluster.nodes() {
        let entries = acl_log(&cluster, port);
        assert!(entries.is_empty(), "ACL LOG on {port}: {entries:?}");
    }
    // TLS 1.3: the client side of the handshake completes before the node checks for a
    // certificate, so the refusal arrives as an alert on the first read.
    assert_refused_clearly(certless, &["CertificateRequired"]);
}

#[test]
fn plaintext_to_tls_nodes_gets_a_hint() {
    let cluster = tls_cluster();
    // The nodes' TLS ports, without upstream.tls.
    let proxy = start_refused(&ProxyConfig::new(&cluster.tls_seeds()).admin());
    assert_refused_clearly(proxy, &["set upstream.tls"]);
}
