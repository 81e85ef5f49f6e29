//! `slotgate import-envoy` end to end (docs/migrating-from-envoy.md): two Envoy bootstraps
//! written the way Envoy deployments write them, pointed at a real cluster, are converted by
//! the binary; slotgate then runs the output and serves SET, GET and pipelines through it.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use slotgate_tests::tls::TestPki;
use slotgate_tests::{
    assert_eventually, free_port, shared_cluster, slotgate_bin, unique_key_prefix, Slotgate,
};

/// Runs `slotgate import-envoy ENVOY -o OUT` and returns (exit code, OUT's text, stderr).
fn import(envoy: &str, file_name: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join(file_name);
    let output = dir.path().join("slotgate.yaml");
    std::fs::write(&input, envoy).unwrap();
    let out = run(&[
        "import-envoy",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ]);
    let yaml = std::fs::read_to_string(&output).unwrap_or_default();
    (
        out.status.code(),
        yaml,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run(args: &[&str]) -> Output {
    Command::new(slotgate_bin())
        .args(args)
        .output()
        .expect("run slotgate")
}

/// `slotgate check-config` on `yaml` with `env` set; panics with its stderr when it fails.
fn check_config(yaml: &str, env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slotgate.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(slotgate_bin())
        .arg("check-config")
        .arg(&path)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check-config refused the converted file: {}\n{yaml}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The cluster's nodes as Envoy `lb_endpoints` entries (YAML, 8 spaces of indent).
fn yaml_endpoints(seeds: &[String]) -> String {
    seeds
        .iter()
        .map(|s| {
            let (host, port) = s.rsplit_once(':').unwrap();
            format!("        - endpoint:\n            address:\n              socket_address:\n                address: {host}\n                port_value: {port}\n")
        })
        .collect()
}

/// SET, GET and a 100-command pipeline over keys that spread over every slot range.
fn exercise(con: &mut redis::Connection) {
    let prefix = unique_key_prefix("import-envoy");
    let key = format!("{prefix}single");
    let _: () = redis::cmd("SET").arg(&key).arg("v1").query(con).unwrap();
    let got: String = redis::cmd("GET").arg(&key).query(con).unwrap();
    assert_eq!(got, "v1");
    let mut pipe = redis::pipe();
    for i in 0..50 {
        pipe.cmd("SET").arg(format!("{prefix}p{i}")).arg(i).ignore();
    }
    for i in 0..50 {
        pipe.cmd("GET").arg(format!("{prefix}p{i}"));
    }
    let values: Vec<i64> = pipe.query(con).unwrap();
    assert_eq!(values, (0..50).collect::<Vec<i64>>());
}

/// Envoy's documented redis_proxy + `envoy.clusters.redis` setup, plaintext, with one
/// downstream user and an admin port: carried over completely (exit 0).
#[test]
fn plaintext_bootstrap_with_downstream_auth() {
    let cluster = shared_cluster();
    let (port, admin_port) = (free_port(), free_port());
    let envoy = format!(
        r#"admin:
  access_log_path: /dev/null
  address:
    socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }}
static_resources:
  listeners:
  - name: redis_listener
    address:
      socket_address:
        address: 127.0.0.1
        port_value: {port}
    filter_chains:
    - filters:
      - name: envoy.filters.network.redis_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy
          stat_prefix: egress_redis
          settings:
            op_timeout: 5s
            enable_redirection: true
            enable_hashtagging: true
          prefix_routes:
            catch_all_route:
              cluster: redis_cluster
          downstream_auth_username:
            inline_string: app
          downstream_auth_passwords:
          - inline_string: app-secret
  clusters:
  - name: redis_cluster
    connect_timeout: 1s
    lb_policy: CLUSTER_PROVIDED
    load_assignment:
      cluster_name: redis_cluster
      endpoints:
      - lb_endpoints:
{}    cluster_type:
      name: envoy.clusters.redis
      typed_config:
        "@type": type.googleapis.com/google.protobuf.Struct
        value:
          cluster_refresh_rate: 5s
          cluster_refresh_timeout: 0.5s
"#,
        yaml_endpoints(&cluster.seeds())
    );
    let (status, yaml, stderr) = import(&envoy, "envoy.yaml");
    assert_eq!(status, Some(0), "stderr: {stderr}\n{yaml}");
    assert!(stderr.is_empty(), "{stderr}");
    check_config(&yaml, &[]);

    let proxy = Slotgate::spawn(&yaml);
    // AUTH as Envoy accepted it: with the user name, and with the password alone.
    let url = format!("redis://app:app-secret@127.0.0.1:{port}/");
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    exercise(&mut con);
    let mut bare = proxy.connection();
    let ok: String = redis::cmd("AUTH")
        .arg("app-secret")
        .query(&mut bare)
        .unwrap();
    assert_eq!(ok, "OK");
    exercise(&mut bare);
    let mut other = proxy.connection();
    let refused = redis::cmd("AUTH")
        .arg("app")
        .arg("wrong")
        .query::<String>(&mut other)
        .unwrap_err();
    assert!(refused.to_string().contains("WRONGPASS"), "{refused}");
    // The admin port is where Envoy's was.
    let scrape = proxy.scrape();
    let sets = scrape.sum(
        "slotgate_commands_total",
        &["command=\"set\"", "result=\"ok\""],
    );
    assert!(sets >= 51.0, "{sets} SETs counted");
}

/// A production-shaped JSON bootstrap: mutual TLS on the listener with the kit's
/// certificates, `${VAR}` placeholders the deployment fills in, and a downstream password
/// from the environment. Everything carries over (exit 0): slotgate expands the placeholders,
/// the listen port's too, from its own environment.
#[test]
fn tls_json_bootstrap_with_placeholders() {
    let cluster = shared_cluster();
    let pki = TestPki::generate();
    let port = free_port();
    let seeds = cluster.seeds();
    let (first_host, first_port) = seeds[0].rsplit_once(':').unwrap();
    let endpoints: Vec<String> = seeds[1..]
        .iter()
        .map(|s| s.rsplit_once(':').unwrap())
        .chain([("${E2E_SEED_HOST}", first_port)])
        .map(|(host, port)| {
            format!(r#"{{"endpoint": {{"address": {{"socket_address": {{"address": "{host}", "port_value": {port}}}}}}}}}"#)
        })
        .collect();
    let file = |p: &Path| p.display().to_string();
    let envoy = format!(
        r#"{{
  "static_resources": {{
    "listeners": [{{
      "name": "redis_tls",
      "address": {{"socket_address": {{"address": "127.0.0.1", "port_value": ${{E2E_LISTEN_PORT}}}}}},
      "filter_chains": [{{
        "transport_socket": {{
          "name": "envoy.transport_sockets.tls",
          "typed_config": {{
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": true,
            "common_tls_context": {{
              "tls_certificates": [{{
                "certificate_chain": {{"filename": "{cert}"}},
                "private_key": {{"filename": "{key}"}}
              }}],
              "validation_context": {{"trusted_ca": {{"filename": "{ca}"}}}}
            }}
          }}
        }},
        "filters": [{{
          "name": "envoy.filters.network.redis_proxy",
          "typed_config": {{
            "@type": "type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy",
            "stat_prefix": "redis_tls",
            "settings": {{"op_timeout": "1.5s", "enable_redirection": true}},
            "prefix_routes": {{"catch_all_route": {{"cluster": "redis_main"}}}},
            "downstream_auth_passwords": [{{"environment_variable": "E2E_REDIS_PASSWORD"}}]
          }}
        }}]
      }}]
    }}],
    "clusters": [{{
      "name": "redis_main",
      "connect_timeout": "0.5s",
      "lb_policy": "CLUSTER_PROVIDED",
      "cluster_type": {{
        "name": "envoy.clusters.redis",
        "typed_config": {{
          "@type": "type.googleapis.com/envoy.extensions.clusters.redis.v3.RedisClusterConfig",
          "cluster_refresh_rate": "10s"
        }}
      }},
      "load_assignment": {{"cluster_name": "redis_main", "endpoints": [{{"lb_endpoints": [{endpoints}]}}]}}
    }}]
  }}
}}
"#,
        cert = file(&pki.server_cert),
        key = file(&pki.server_key),
        ca = file(&pki.ca),
        endpoints = endpoints.join(", "),
    );
    let (status, yaml, stderr) = import(&envoy, "envoy.json");
    assert_eq!(status, Some(0), "stderr: {stderr}\n{yaml}");
    assert!(
        yaml.contains("listen: \"127.0.0.1:${E2E_LISTEN_PORT}\""),
        "{yaml}"
    );
    assert!(
        yaml.contains("password: \"${E2E_REDIS_PASSWORD}\""),
        "{yaml}"
    );

    // slotgate expands every placeholder from its environment (the kit reads the listen
    // port from this process's).
    let port_text = port.to_string();
    std::env::set_var("E2E_LISTEN_PORT", &port_text);
    let env = [
        ("E2E_LISTEN_PORT", port_text.as_str()),
        ("E2E_SEED_HOST", first_host),
        ("E2E_REDIS_PASSWORD", "tls-secret"),
    ];
    check_config(&yaml, &env);
    let proxy = env
        .iter()
        .fold(Slotgate::builder(&yaml), |b, (k, v)| b.env(*k, *v))
        .wait_ready(false)
        .spawn();
    let client = redis::Client::build_with_tls(
        format!("rediss://:tls-secret@127.0.0.1:{port}/"),
        redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: std::fs::read(&pki.client_cert).unwrap(),
                client_key: std::fs::read(&pki.client_key).unwrap(),
            }),
            root_cert: Some(std::fs::read(&pki.ca).unwrap()),
        },
    )
    .unwrap();
    assert_eventually!(
        client.get_connection().is_ok(),
        Duration::from_secs(10),
        "slotgate not ready over TLS; log:\n{}",
        proxy.log()
    );
    exercise(&mut client.get_connection().unwrap());
}
