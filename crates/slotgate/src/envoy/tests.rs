use std::time::Duration;

use super::*;
use crate::settings;

/// Envoy's redis_proxy docs example, pointed at a Redis Cluster the way Envoy's Redis Cluster
/// docs write it (`envoy.clusters.redis`, a `google.protobuf.Struct` typed config).
const DOCS_EXAMPLE: &str = r#"
admin:
  access_log_path: "/dev/null"
  address:
    socket_address:
      address: 0.0.0.0
      port_value: 8001
static_resources:
  listeners:
  - name: redis_listener
    address:
      socket_address:
        address: 0.0.0.0
        port_value: 1999
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
  clusters:
  - name: redis_cluster
    connect_timeout: 0.25s
    dns_lookup_family: V4_ONLY
    lb_policy: CLUSTER_PROVIDED
    load_assignment:
      cluster_name: redis_cluster
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address:
                address: 10.0.1.10
                port_value: 6379
        - endpoint:
            address:
              socket_address:
                address: 10.0.2.11
                port_value: 6379
    cluster_type:
      name: envoy.clusters.redis
      typed_config:
        "@type": type.googleapis.com/google.protobuf.Struct
        value:
          cluster_refresh_rate: 30s
          cluster_refresh_timeout: 0.5s
          redirect_refresh_interval: 10s
          redirect_refresh_threshold: 10
"#;

/// A production-shaped bootstrap: TLS listener with mTLS, `${VAR}` placeholders filled in by
/// the deployment (envsubst), replica reads, upstream ACL user and TLS, downstream auth with
/// a password from the environment.
const PRODUCTION: &str = r#"
node:
  id: redis-edge
  cluster: redis-edge
static_resources:
  listeners:
  - name: redis_tls
    address:
      socket_address: { address: 0.0.0.0, port_value: ${ENVOY_LISTENER_PORT} }
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_params:
              tls_minimum_protocol_version: TLSv1_2
            tls_certificates:
            - certificate_chain: { filename: /etc/envoy/tls/server.crt }
              private_key: { filename: /etc/envoy/tls/server.key }
            validation_context:
              trusted_ca: { filename: /etc/envoy/tls/clients-ca.crt }
      transport_socket_connect_timeout: 3s
      filters:
      - name: envoy.filters.network.redis_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy
          stat_prefix: redis_edge
          settings:
            op_timeout: 0.5s
            enable_redirection: true
            enable_hashtagging: true
            read_policy: PREFER_REPLICA
            max_buffer_size_before_flush: 1024
            buffer_flush_timeout: 0.003s
            enable_command_stats: true
          prefix_routes:
            catch_all_route:
              cluster: redis_main
          downstream_auth_username:
            inline_string: app
          downstream_auth_passwords:
          - environment_variable: REDIS_APP_PASSWORD
  clusters:
  - name: redis_main
    connect_timeout: 1.5s
    lb_policy: CLUSTER_PROVIDED
    load_assignment:
      cluster_name: redis_main
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: ${REDIS_SEED_HOST}, port_value: 6379 } } }
        - endpoint: { address: { socket_address: { address: "redis-1.internal", port_value: 6379 } } }
    cluster_type:
      name: envoy.clusters.redis
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.clusters.redis.v3.RedisClusterConfig
        cluster_refresh_rate: 10s
        failure_refresh_threshold: 3
    typed_extension_protocol_options:
      envoy.filters.network.redis_proxy:
        "@type": type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProtocolOptions
        auth_username: { inline_string: envoy-proxy }
        auth_password: { environment_variable: REDIS_UPSTREAM_PASSWORD }
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: redis.internal
        common_tls_context:
          validation_context:
            trusted_ca: { filename: /etc/envoy/tls/redis-ca.crt }
"#;

fn convert_ok(text: &str) -> Import {
    convert(text, "envoy.yaml").unwrap_or_else(|e| panic!("conversion failed: {e}"))
}

fn convert_err(text: &str) -> ImportError {
    match convert(text, "envoy.yaml") {
        Ok(import) => panic!("converted, expected an error:\n{}", import.yaml),
        Err(e) => e,
    }
}

/// The output loaded the way `check-config` loads a file.
fn load(yaml: &str) -> settings::Settings {
    let dir = tempfile_dir();
    let path = dir.join("slotgate.yaml");
    std::fs::write(&path, yaml).unwrap();
    let loaded = settings::load(&path);
    let _ = std::fs::remove_dir_all(&dir);
    loaded.unwrap_or_else(|e| panic!("{e:#}\n{yaml}"))
}

fn tempfile_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "slotgate-envoy-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn lost_paths(import: &Import) -> Vec<&str> {
    import.lost.iter().map(|f| f.path.as_str()).collect()
}

fn lost_message<'a>(import: &'a Import, path: &str) -> &'a str {
    import
        .lost
        .iter()
        .find(|f| f.path == path)
        .map(|f| f.message.as_str())
        .unwrap_or_else(|| panic!("{path} not listed in {:#?}", import.lost))
}

#[test]
fn docs_example_converts_completely() {
    let import = convert_ok(DOCS_EXAMPLE);
    assert!(import.lost.is_empty(), "{:#?}", import.lost);
    let s = load(&import.yaml);
    let up = &s.proxy.upstream;
    assert_eq!(s.proxy.listen.to_string(), "0.0.0.0:1999");
    assert_eq!(up.seeds, ["10.0.1.10:6379", "10.0.2.11:6379"]);
    assert_eq!(up.op_timeout, Duration::from_secs(5));
    assert_eq!(up.connect_timeout, Duration::from_millis(250));
    assert_eq!(up.refresh_interval, Duration::from_secs(30));
    assert!(s.proxy.users.is_empty() && s.proxy.tls.is_none());
    assert_eq!(s.admin.unwrap().listen.to_string(), "0.0.0.0:8001");
    // Notes are comments in the output.
    let y = &import.yaml;
    assert!(y.contains("# Notes:"), "{y}");
    assert!(
        y.contains("settings.enable_redirection: slotgate always follows MOVED and ASK"),
        "{y}"
    );
    assert!(y.contains("redis.egress_redis.*"), "{y}");
    assert!(!y.contains("Not carried over"), "{y}");
}

/// Envoy's redis sandbox (`examples/redis/envoy.yaml`): one server behind a plain cluster.
const SANDBOX: &str = r#"
static_resources:
  listeners:
  - name: redis_listener
    address:
      socket_address:
        address: 0.0.0.0
        port_value: 1999
    filter_chains:
    - filters:
      - name: envoy.filters.network.redis_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy
          stat_prefix: egress_redis
          settings:
            op_timeout: 5s
          prefix_routes:
            catch_all_route:
              cluster: redis_cluster
  clusters:
  - name: redis_cluster
    type: STRICT_DNS  # static
    lb_policy: MAGLEV
    load_assignment:
      cluster_name: redis_cluster
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address:
                address: redis_server
                port_value: 6379
admin:
  address:
    socket_address:
      address: 0.0.0.0
      port_value: 8001
"#;

#[test]
fn sandbox_with_one_server_becomes_standalone_mode() {
    let import = convert_ok(SANDBOX);
    assert!(import.lost.is_empty(), "{:#?}", import.lost);
    assert!(
        import
            .yaml
            .contains("upstream:\n  mode: standalone\n  seeds: [\"redis_server:6379\"]\n"),
        "{}",
        import.yaml
    );
    // A second server makes it Envoy's hash ring over independent servers.
    let two = SANDBOX.replace(
        "        - endpoint:\n",
        "        - endpoint: { address: { socket_address: { address: redis_two, port_value: 6379 } } }\n        - endpoint:\n",
    );
    let e = convert_err(&two);
    assert_eq!(e.path, "static_resources.clusters[0]");
    assert!(e.message.contains("its 2 servers with a hash ring"), "{e}");
}

#[test]
fn json_and_camel_case_give_the_same_configuration() {
    let doc = tree::parse(DOCS_EXAMPLE).unwrap();
    let json = serde_json::to_string_pretty(&doc)
        .unwrap()
        .replace("  ", "\t");
    let camel = json
        .replace("\"load_assignment\"", "\"loadAssignment\"")
        .replace("\"lb_endpoints\"", "\"lbEndpoints\"")
        .replace("\"socket_address\"", "\"socketAddress\"")
        .replace("\"port_value\"", "\"portValue\"");
    assert!(camel.contains("portValue") && camel.contains('\t'));
    let yaml = convert_ok(DOCS_EXAMPLE).yaml;
    assert_eq!(convert_ok(&json).yaml, yaml);
    assert_eq!(convert_ok(&camel).yaml, yaml);
}

#[test]
fn production_config_with_placeholders_tls_and_auth() {
    let import = convert_ok(PRODUCTION);
    let y = &import.yaml;
    assert!(
        y.contains("listen: \"0.0.0.0:${ENVOY_LISTENER_PORT}\""),
        "{y}"
    );
    assert!(
        y.contains("seeds: [\"${REDIS_SEED_HOST}:6379\", \"redis-1.internal:6379\"]"),
        "{y}"
    );
    assert!(
        y.contains("  username: \"envoy-proxy\"\n  password: \"${REDIS_UPSTREAM_PASSWORD}\"\n"),
        "{y}"
    );
    assert!(
        y.contains("    password: \"${REDIS_APP_PASSWORD}\"\n    rules: \"+@all ~* &*\""),
        "{y}"
    );
    assert!(y.contains("  handshake_timeout: \"3s\""), "{y}");
    // Everything carries over: the placeholders too (slotgate expands them), and
    // PREFER_REPLICA as read_from.
    assert!(lost_paths(&import).is_empty(), "{:?}", lost_paths(&import));
    assert!(y.contains("  read_from: prefer-replica\n"), "{y}");

    // With the variables set, the file loads as it is.
    for (k, v) in [
        ("ENVOY_LISTENER_PORT", "6380"),
        ("REDIS_SEED_HOST", "10.0.1.10"),
        ("REDIS_UPSTREAM_PASSWORD", "up-secret"),
        ("REDIS_APP_PASSWORD", "app-secret"),
    ] {
        std::env::set_var(k, v);
    }
    let s = load(y);
    assert_eq!(s.proxy.listen.port(), 6380);
    let tls = s.proxy.tls.as_ref().expect("tls");
    assert_eq!(tls.cert.to_str(), Some("/etc/envoy/tls/server.crt"));
    assert_eq!(
        tls.client_ca.as_deref().and_then(|p| p.to_str()),
        Some("/etc/envoy/tls/clients-ca.crt")
    );
    assert_eq!(tls.handshake_timeout, Duration::from_secs(3));
    let up = &s.proxy.upstream;
    assert_eq!(up.op_timeout, Duration::from_millis(500));
    assert_eq!(up.connect_timeout, Duration::from_millis(1500));
    assert_eq!(up.refresh_interval, Duration::from_secs(10));
    assert_eq!(up.username.as_deref(), Some("envoy-proxy"));
    assert_eq!(up.password.as_deref(), Some("up-secret"));
    let utls = up.tls.as_ref().expect("upstream tls");
    assert_eq!(utls.server_name.as_deref(), Some("redis.internal"));
    assert_eq!(
        utls.ca.as_deref().and_then(|p| p.to_str()),
        Some("/etc/envoy/tls/redis-ca.crt")
    );
    let names: Vec<&str> = s.proxy.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["app", "default"]);
    assert!(s
        .proxy
        .users
        .iter()
        .all(|u| u.password.matches(b"app-secret")));
}

#[test]
fn placeholders_slotgate_expands_itself_need_no_substitution() {
    let text = DOCS_EXAMPLE
        .replace("address: 10.0.1.10", "address: ${SLOTGATE_ENVOY_TEST_SEED}")
        .replace(
            "          prefix_routes:",
            "          downstream_auth_password: { inline_string: \"${SLOTGATE_ENVOY_TEST_PW}\" }\n          prefix_routes:",
        );
    let import = convert_ok(&text);
    assert!(import.lost.is_empty(), "{:#?}", import.lost);
    std::env::set_var("SLOTGATE_ENVOY_TEST_SEED", "10.9.9.9");
    std::env::set_var("SLOTGATE_ENVOY_TEST_PW", "pw-from-env");
    let s = load(&import.yaml);
    assert_eq!(s.proxy.upstream.seeds[0], "10.9.9.9:6379");
    assert_eq!(s.proxy.users.len(), 1);
    assert_eq!(s.proxy.users[0].name, "default");
    assert!(s.proxy.users[0].password.matches(b"pw-from-env"));
}

#[test]
fn several_passwords_keep_the_first_and_list_the_others() {
    let dir = tempfile_dir();
    let file = dir.join("pw");
    std::fs::write(&file, "from-file\n").unwrap();
    let text = DOCS_EXAMPLE.replace(
        "          prefix_routes:",
        &format!(
            "          downstream_auth_username: {{ inline_string: svc }}\n          downstream_auth_passwords:\n          - filename: {}\n          - inline_string: second\n          - inline_string: \"\"\n          prefix_routes:",
            file.display()
        ),
    );
    let import = convert_ok(&text);
    let filter = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";
    assert_eq!(
        lost_paths(&import),
        [format!("{filter}.downstream_auth_passwords[1]")]
    );
    let y = &import.yaml;
    assert!(y.contains("# Envoy accepted `AUTH svc <password>` and `AUTH <password>` with any of its 2 passwords."), "{y}");
    assert!(
        y.contains(&format!(
            "  - name: \"svc\"\n    password_file: \"{}\"",
            file.display()
        )),
        "{y}"
    );
    let s = load(y);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(s.proxy.users.len(), 2);
    assert!(s
        .proxy
        .users
        .iter()
        .all(|u| u.password.matches(b"from-file")));
}

#[test]
fn several_prefix_routes_are_listed_by_path() {
    let text = DOCS_EXAMPLE.replace(
        "            catch_all_route:\n              cluster: redis_cluster",
        "            routes:\n            - prefix: \"cache:\"\n              cluster: redis_cluster\n            - prefix: \"session:\"\n              cluster: redis_sessions\n            catch_all_route:\n              cluster: redis_cluster\n              request_mirror_policy:\n              - cluster: redis_shadow",
    );
    let import = convert_ok(&text);
    let routes =
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.prefix_routes";
    assert_eq!(
        lost_paths(&import),
        [
            format!("{routes}.catch_all_route.request_mirror_policy"),
            format!("{routes}.routes[1]"),
        ]
    );
    assert_eq!(
        lost_message(&import, &format!("{routes}.routes[1]")),
        "several prefix routes: slotgate routes every key to one cluster (keys starting with \"session:\" went to cluster \"redis_sessions\")"
    );
    assert!(import
        .yaml
        .contains(&format!("{routes}.routes[0]: routes to the same cluster")));
    load(&import.yaml);
}

#[test]
fn unsupported_features_are_listed_with_their_paths() {
    let text = DOCS_EXAMPLE
        .replace(
            "          prefix_routes:",
            "          faults:\n          - fault_type: ERROR\n            fault_enabled: { default_value: { numerator: 10, denominator: HUNDRED } }\n          custom_commands: [\"json.get\"]\n          external_auth_provider: { grpc_service: { envoy_grpc: { cluster_name: auth } } }\n          prefix_routes:",
        )
        .replace(
            "            enable_hashtagging: true",
            "            enable_hashtagging: false\n            dns_cache_config: { name: redis_dns }\n            brand_new_setting: 1",
        );
    let import = convert_ok(&text);
    let filter = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";
    let mut expected = [
        format!("{filter}.settings.dns_cache_config"),
        format!("{filter}.settings.brand_new_setting"),
        format!("{filter}.faults"),
        format!("{filter}.external_auth_provider"),
        format!("{filter}.custom_commands"),
    ];
    let mut got: Vec<String> = lost_paths(&import).iter().map(|p| p.to_string()).collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    assert!(
        lost_message(&import, &format!("{filter}.settings.brand_new_setting"))
            .contains("not converted")
    );
    // Envoy hashes tags for envoy.clusters.redis whatever enable_hashtagging says.
    assert!(import
        .yaml
        .contains("settings.enable_hashtagging: no effect"));
    load(&import.yaml);
}

#[test]
fn tls_material_slotgate_cannot_read_is_listed() {
    let text = PRODUCTION
        .replace(
            "certificate_chain: { filename: /etc/envoy/tls/server.crt }",
            "certificate_chain: { inline_string: \"-----BEGIN CERTIFICATE-----\" }",
        )
        .replace("          require_client_certificate: true\n", "")
        .replace("        sni: redis.internal\n", "")
        .replace(
            "          validation_context:\n            trusted_ca: { filename: /etc/envoy/tls/redis-ca.crt }\n",
            "          tls_certificates:\n          - certificate_chain: { environment_variable: CLIENT_CERT }\n            private_key: { filename: /k }\n",
        );
    let import = convert_ok(&text);
    let chain = "static_resources.listeners[0].filter_chains[0].transport_socket.typed_config";
    let upstream = "static_resources.clusters[0].transport_socket.typed_config";
    let paths = lost_paths(&import);
    for p in [
        format!("{chain}.common_tls_context.tls_certificates[0].certificate_chain"),
        chain.to_string(),
        format!("{upstream}.common_tls_context.tls_certificates[0].certificate_chain"),
        upstream.to_string(),
    ] {
        assert!(paths.contains(&p.as_str()), "{p} not in {paths:#?}");
    }
    assert!(lost_message(&import, chain).contains("optional"));
    assert!(lost_message(&import, upstream).contains("did not verify"));
    assert!(import.yaml.contains("cert: \"EDIT-ME"), "{}", import.yaml);
}

#[test]
fn durations_become_slotgate_durations() {
    for (envoy, slotgate, expected) in [
        ("5s", "5s", Duration::from_secs(5)),
        ("0.5s", "500ms", Duration::from_millis(500)),
        ("1.5s", "1500ms", Duration::from_millis(1500)),
        (".25s", "250ms", Duration::from_millis(250)),
        ("0.0001s", "0.1ms", Duration::from_micros(100)),
        ("100ms", "100ms", Duration::from_millis(100)),
        ("60s", "60s", Duration::from_secs(60)),
    ] {
        let text = DOCS_EXAMPLE.replace("op_timeout: 5s", &format!("op_timeout: {envoy}"));
        let import = convert_ok(&text);
        assert!(
            import.yaml.contains(&format!("op_timeout: \"{slotgate}\"")),
            "{envoy}: {}",
            import.yaml
        );
        let got = load(&import.yaml).proxy.upstream.op_timeout;
        // slotgate reads durations through f64 seconds.
        assert!(
            got.abs_diff(expected) < Duration::from_micros(1),
            "{envoy}: {got:?}"
        );
    }
    for bad in ["5", "-1s", "1.5", "1.2.3s", "s", "1e3s", "5 minutes"] {
        let text = DOCS_EXAMPLE.replace("op_timeout: 5s", &format!("op_timeout: {bad}"));
        let e = convert_err(&text);
        assert!(e.path.ends_with("settings.op_timeout"), "{bad}: {e}");
    }
}

#[test]
fn wrappers_and_list_shortcuts_are_read() {
    // A TypedStruct-wrapped filter config, a filter_chains mapping instead of a list, a
    // listener that is not Redis before the Redis one.
    let text = DOCS_EXAMPLE
        .replace(
            "          \"@type\": type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy\n          stat_prefix: egress_redis\n          settings:\n            op_timeout: 5s",
            "          \"@type\": type.googleapis.com/xds.type.v3.TypedStruct\n          type_url: type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy\n          value:\n            settings:\n              op_timeout: 5s",
        )
        .replace("            enable_redirection: true\n            enable_hashtagging: true\n          prefix_routes:\n            catch_all_route:\n              cluster: redis_cluster",
                 "              enable_redirection: true\n            prefix_routes:\n              catch_all_route:\n                cluster: redis_cluster")
        .replace("    filter_chains:\n    - filters:\n      - name: envoy.filters.network.redis_proxy", "    filter_chains:\n      filters:\n      - name: envoy.filters.network.redis_proxy")
        .replace("  listeners:\n", "  listeners:\n  - name: http\n    address: { socket_address: { address: 0.0.0.0, port_value: 8080 } }\n    filter_chains: [{ filters: [{ name: envoy.filters.network.http_connection_manager }] }]\n");
    let import = convert_ok(&text);
    assert!(
        import.lost.is_empty(),
        "{:#?}\n{}",
        import.lost,
        import.yaml
    );
    assert!(import
        .yaml
        .contains("static_resources.listeners[0]: not a redis_proxy listener: ignored"));
    assert_eq!(load(&import.yaml).proxy.listen.port(), 1999);
}

#[test]
fn malformed_input_is_an_error_naming_the_path() {
    let cluster = "static_resources.clusters[0]";
    let assignment = format!("{cluster}.load_assignment");
    let cluster_type = format!("{cluster}.cluster_type");
    let cases: Vec<(String, &str, &str)> = vec![
        ("listen: [1, 2\n".into(), "", "not YAML or JSON"),
        ("{\"static_resources\": ".into(), "", "not YAML or JSON"),
        ("- a\n- b\n".into(), "", "not a mapping"),
        (String::new(), "", "not a mapping"),
        ("admin: {}\n".into(), "", "no static_resources"),
        (DOCS_EXAMPLE.replace("envoy.filters.network.redis_proxy", "envoy.filters.network.tcp_proxy").replace("redis_proxy.v3.RedisProxy", "tcp_proxy.v3.TcpProxy"), "static_resources.listeners", "no listener runs the envoy.filters.network.redis_proxy filter"),
        (DOCS_EXAMPLE.replace("  - name: redis_cluster\n", "  - name: other\n"), "static_resources.clusters", "no cluster named \"redis_cluster\""),
        (DOCS_EXAMPLE.replace("name: envoy.clusters.redis", "name: envoy.clusters.aggregate"), &cluster_type, "slotgate proxies a Redis Cluster"),
        (DOCS_EXAMPLE.replace("    cluster_type:\n      name: envoy.clusters.redis", "    type: STRICT_DNS\n    cluster_typ:\n      name: envoy.clusters.redis"), cluster, "is not an envoy.clusters.redis cluster"),
        (DOCS_EXAMPLE.replace("port_value: 1999", "port_value: \"abc\""), "static_resources.listeners[0].address.socket_address.port_value", "expected a non-negative integer, found a string"),
        (DOCS_EXAMPLE.replace("port_value: 1999", "port_value: 70000"), "static_resources.listeners[0].address.socket_address.port_value", "not a port number"),
        (DOCS_EXAMPLE.replace("    filter_chains:\n    - filters:", "    filter_chains: 5\n    x:\n    - filters:"), "static_resources.listeners", "no listener runs"),
        (DOCS_EXAMPLE.replace("op_timeout: 5s", "op_timeout: 5"), "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.settings.op_timeout", "expected a duration"),
        (DOCS_EXAMPLE.replace("enable_redirection: true", "enable_redirection: sometimes"), "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.settings.enable_redirection", "expected true or false"),
        (DOCS_EXAMPLE.replace("      endpoints:\n", "      endpointz:\n"), &assignment, "missing field endpoints"),
        (DOCS_EXAMPLE.replace("      endpoints:\n      - lb_endpoints:", "      endpoints:\n      - lb_endpoints: []\n        x:"), &assignment, "no endpoints"),
        (DOCS_EXAMPLE.replace("            catch_all_route:\n              cluster: redis_cluster", "            case_insensitive: true"), "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.prefix_routes", "no catch_all_route and no routes"),
    ];
    for (text, path, message) in cases {
        let e = convert_err(&text);
        assert_eq!(e.path, path, "{e}");
        assert!(e.message.contains(message), "expected {message:?} in {e}");
    }
}

#[test]
fn no_value_in_any_place_makes_it_panic() {
    let doc = tree::parse(PRODUCTION).unwrap();
    let replacements = [
        serde_json::Value::Null,
        serde_json::json!(-1),
        serde_json::json!(1.5),
        serde_json::json!("${X}"),
        serde_json::json!("x"),
        serde_json::json!([]),
        serde_json::json!([{}]),
        serde_json::json!({}),
        serde_json::json!(true),
    ];
    let mut paths = Vec::new();
    collect_pointers(&doc, String::new(), &mut paths);
    assert!(paths.len() > 80, "{}", paths.len());
    for pointer in &paths {
        for r in &replacements {
            let mut mutated = doc.clone();
            if let Some(slot) = mutated.pointer_mut(pointer) {
                *slot = r.clone();
            }
            let text = serde_json::to_string(&mutated).unwrap();
            // Ok or Err, never a panic.
            let _ = convert(&text, "mutated.json");
        }
    }
}

fn collect_pointers(value: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                collect_pointers(
                    v,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

#[test]
fn placeholders_survive_json_flow_and_quotes() {
    let text = r#"{"static_resources": {"listeners": [{"address": {"socket_address": {"address": "${BIND}", "port_value": ${PORT}}},
      "filter_chains": [{"filters": [{"name": "envoy.filters.network.redis_proxy", "typed_config": {
        "settings": {"op_timeout": "1s"}, "prefix_routes": {"catch_all_cluster": "c"}}}]}]}],
      "clusters": [{"name": "c", "cluster_type": {"name": "envoy.clusters.redis"},
        "load_assignment": {"endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "n1", "port_value": "${P1}"}}}}]}]}}]}}"#;
    let import = convert_ok(text);
    assert!(
        import.yaml.contains("listen: \"${BIND}:${PORT}\""),
        "{}",
        import.yaml
    );
    assert!(
        import.yaml.contains("seeds: [\"n1:${P1}\"]"),
        "{}",
        import.yaml
    );
    assert!(lost_paths(&import).is_empty(), "{:?}", lost_paths(&import));
}
