use super::*;

const MINIMAL: &str = "listen: \"127.0.0.1:6380\"\nupstream:\n  seeds: [\"127.0.0.1:7000\"]\n";

#[test]
fn minimal_config_gets_defaults() {
    let s = parse(MINIMAL).unwrap();
    assert_eq!(s.proxy.listen.port(), 6380);
    assert_eq!(s.proxy.upstream.refresh_interval, Duration::from_secs(10));
    assert_eq!(s.proxy.upstream.op_timeout, Duration::from_secs(2));
    assert_eq!(s.proxy.upstream.max_redirects, 5);
    assert_eq!(s.proxy.limits.max_pipeline, 1024);
    assert_eq!(s.proxy.limits.max_request_bytes, 512 * 1024 * 1024);
    assert_eq!(s.proxy.limits.client_idle_timeout, None);
    assert_eq!(s.log.level, "info");
    assert_eq!(s.proxy.restricted_scripts, RestrictedScripts::Mirror);
}

#[test]
fn scripting_restricted_users() {
    let s = parse(&format!("{MINIMAL}scripting:\n  restricted_users: allow\n")).unwrap();
    assert_eq!(s.proxy.restricted_scripts, RestrictedScripts::Allow);
    assert!(s.describe().contains("restricted_users: allow"));
    let s = parse(&format!(
        "{MINIMAL}scripting:\n  restricted_users: refuse\n"
    ))
    .unwrap();
    assert_eq!(s.proxy.restricted_scripts, RestrictedScripts::Refuse);
    let err = parse(&format!("{MINIMAL}scripting:\n  restricted_users: maybe\n")).unwrap_err();
    assert!(
        format!("{err:#}").contains("scripting.restricted_users"),
        "{err:#}"
    );
    let err = parse(&format!("{MINIMAL}scripting:\n  users: allow\n")).unwrap_err();
    assert!(format!("{err:#}").contains("users"), "{err:#}");
}

#[test]
fn unknown_keys_are_errors() {
    let err = parse(&format!("{MINIMAL}bogus: 1\n")).unwrap_err();
    assert!(format!("{err:#}").contains("bogus"), "{err:#}");
    let err =
        parse("listen: \"127.0.0.1:1\"\nupstream:\n  seeds: [\"a:1\"]\n  sedes: []\n").unwrap_err();
    assert!(format!("{err:#}").contains("sedes"), "{err:#}");
}

#[test]
fn units_and_env() {
    std::env::set_var("SLOTGATE_TEST_PW", "s3cret");
    let s = parse(
        "listen: \"127.0.0.1:6380\"\nupstream:\n  seeds: [\"127.0.0.1:7000\"]\n  password: \"${SLOTGATE_TEST_PW}\"\n  op_timeout: 500ms\n  refresh_interval: 1m\nlimits:\n  max_request_bytes: 64kb\n  client_idle_timeout: 30s\nshutdown_grace: 2s\n",
    )
    .unwrap();
    assert_eq!(s.proxy.upstream.password.as_deref(), Some("s3cret"));
    assert_eq!(s.proxy.upstream.op_timeout, Duration::from_millis(500));
    assert_eq!(s.proxy.upstream.refresh_interval, Duration::from_secs(60));
    assert_eq!(s.proxy.limits.max_request_bytes, 65536);
    assert_eq!(
        s.proxy.limits.client_idle_timeout,
        Some(Duration::from_secs(30))
    );
    assert!(!s.describe().contains("s3cret"));
    assert!(s.describe().contains("********"));
}

#[test]
fn bad_values_are_errors() {
    for bad in [
        "listen: \"127.0.0.1:6380\"\nupstream:\n  seeds: []\n",
        "listen: \"nope\"\nupstream:\n  seeds: [\"a:1\"]\n",
        "listen: \"127.0.0.1:6380\"\nupstream:\n  seeds: [\"a:1\"]\n  op_timeout: 10\n",
        "listen: \"127.0.0.1:6380\"\nupstream:\n  seeds: [\"a:1\"]\n  mode: sentinel\n",
        "listen: \"127.0.0.1:6380\"\nupstream:\n  seeds: [\"a:1\"]\n  password: \"${SLOTGATE_SURELY_UNSET_VAR}\"\n",
        "listen: \"127.0.0.1:6380\"\nupstream:\n  seeds: [\"a:1\"]\nlimits:\n  max_request_bytes: 12xb\n",
        "listen: \"127.0.0.1:6380\"\nupstream:\n  seeds: [\"a:1\"]\nlog:\n  level: loud\n",
    ] {
        assert!(parse(bad).is_err(), "accepted: {bad}");
    }
}

#[test]
fn sizes_and_durations() {
    assert_eq!(parse_size("512mb").unwrap(), 512 * 1024 * 1024);
    assert_eq!(parse_size("10k").unwrap(), 10_000);
    assert_eq!(parse_size("7").unwrap(), 7);
    assert!(parse_size("99999999999999gb").is_err());
    assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert!(parse_duration("5").is_err());
    assert!(parse_duration("5 parsecs").is_err());
}

#[test]
fn example_configs_parse() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config");
    let mut seen = 0;
    // The secrets the examples take from the environment.
    for var in ["SENTINEL_PASSWORD", "REDIS_PROXY_PASSWORD", "APP_PASSWORD"] {
        std::env::set_var(var, "example-secret");
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            seen += 1;
        }
    }
    assert!(seen > 0, "no example config found in {dir}");
}

#[test]
fn upstream_modes_take_their_own_keys() {
    let up = |body: &str| parse(&format!("listen: \"127.0.0.1:6380\"\nupstream:\n{body}"));
    let err = |body: &str| format!("{:#}", up(body).unwrap_err());
    // Standalone: exactly one server.
    let s = up("  mode: standalone\n  seeds: [\"127.0.0.1:6379\"]\n").unwrap();
    assert_eq!(s.proxy.upstream.mode, UpstreamMode::Standalone);
    assert!(s.describe().contains("mode: standalone"));
    let e = err("  mode: standalone\n  seeds: [\"a:1\", \"b:2\"]\n");
    assert!(e.contains("exactly one server"), "{e}");
    // Sentinel: sentinels and master_name, no seeds; the sentinel password is masked.
    std::env::set_var("SLOTGATE_TEST_SENTINEL_PW", "s3cret");
    let s = up("  mode: sentinel\n  sentinels: [\"127.0.0.1:26379\", \"127.0.0.1:26380\"]\n  master_name: mymaster\n  sentinel_password: \"${SLOTGATE_TEST_SENTINEL_PW}\"\n").unwrap();
    let UpstreamMode::Sentinel(sc) = &s.proxy.upstream.mode else {
        panic!("not sentinel mode");
    };
    assert_eq!(sc.sentinels.len(), 2);
    assert_eq!(sc.master_name, "mymaster");
    assert_eq!(sc.password.as_deref(), Some("s3cret"));
    let shown = s.describe();
    assert!(shown.contains("mode: sentinel") && shown.contains("master_name: mymaster"));
    assert!(!shown.contains("s3cret"), "{shown}");
    let e = err("  mode: sentinel\n  sentinels: [\"127.0.0.1:26379\"]\n");
    assert!(e.contains("upstream.master_name"), "{e}");
    let e = err("  mode: sentinel\n  master_name: m\n");
    assert!(e.contains("upstream.sentinels"), "{e}");
    let e = err("  mode: sentinel\n  sentinels: [\"x:1\"]\n  master_name: m\n  seeds: [\"a:1\"]\n");
    assert!(e.contains("upstream.seeds"), "{e}");
    let e = err("  mode: sentinel\n  sentinels: [\"nohost\"]\n  master_name: m\n");
    assert!(e.contains("not host:port"), "{e}");
    // Sentinel keys outside sentinel mode, and unknown modes.
    let e = err("  seeds: [\"a:1\"]\n  master_name: m\n");
    assert!(e.contains("mode: sentinel"), "{e}");
    let e = err("  mode: replica\n  seeds: [\"a:1\"]\n");
    assert!(e.contains("cluster|standalone|sentinel"), "{e}");
    // Cluster still needs seeds.
    let e = err("  seeds: []\n");
    assert!(e.contains("upstream.seeds"), "{e}");
}

#[test]
fn restart_keys_are_what_sighup_cannot_apply() {
    let old = parse(&format!(
        "{MINIMAL}users:\n  - name: a\n    password: x\n    rules: \"+@all ~*\"\n"
    ))
    .unwrap()
    .describe();
    let new = parse(
        "listen: \"127.0.0.1:6381\"\nupstream:\n  seeds: [\"127.0.0.1:7000\"]\n  op_timeout: 3s\nusers:\n  - name: b\n    password: y\n    rules: \"+@read ~*\"\n",
    )
    .unwrap()
    .describe();
    assert_eq!(restart_keys(&old, &new), ["listen", "upstream.op_timeout"]);
    assert!(restart_keys(&old, &old).is_empty());
}

#[test]
fn admin_commands_default_follows_users() {
    const USERS: &str = "users:\n  - name: ops\n    password: x\n    rules: \"+@all ~*\"\n";
    let s = parse(MINIMAL).unwrap();
    assert_eq!(s.proxy.upstream.admin_commands, None);
    assert_eq!(s.proxy.admin_commands(), AdminCommands::Deny);
    assert!(s.describe().contains("  admin_commands: deny\n"));
    let s = parse(&format!("{MINIMAL}{USERS}")).unwrap();
    assert_eq!(s.proxy.admin_commands(), AdminCommands::Acl);
    assert!(s.describe().contains("  admin_commands: acl\n"));
    let s = parse(&format!("{MINIMAL}  admin_commands: deny\n{USERS}")).unwrap();
    assert_eq!(s.proxy.admin_commands(), AdminCommands::Deny);
    let s = parse(&format!("{MINIMAL}  admin_commands: acl\n")).unwrap();
    assert_eq!(s.proxy.admin_commands(), AdminCommands::Acl);
    let err = parse(&format!("{MINIMAL}  admin_commands: allow\n")).unwrap_err();
    assert!(
        format!("{err:#}").contains("upstream.admin_commands: expected acl|deny"),
        "{err:#}"
    );
}

#[test]
fn cache_section() {
    let s = parse(MINIMAL).unwrap();
    assert!(!s.proxy.cache.enabled);
    assert_eq!(s.proxy.cache.max_memory, 64 * 1024 * 1024);
    assert_eq!(s.proxy.cache.max_ttl, Duration::from_secs(60));
    assert_eq!(s.proxy.cache.keys, vec!["*".to_string()]);
    assert_eq!(s.proxy.cache.max_value_size, 64 * 1024);
    let s = parse(&format!(
        "{MINIMAL}cache:\n  enabled: true\n  max_memory: 1mb\n  max_ttl: 500ms\n  keys: [\"user:*\", \"cfg\"]\n  max_value_size: 1kb\n"
    ))
    .unwrap();
    let c = &s.proxy.cache;
    assert!(c.enabled);
    assert_eq!(
        (c.max_memory, c.max_ttl, c.max_value_size),
        (1024 * 1024, Duration::from_millis(500), 1024)
    );
    assert_eq!(c.keys, vec!["user:*".to_string(), "cfg".to_string()]);
    assert!(s.describe().contains("cache:\n  enabled: true"));
    for (bad, names) in [
        ("cache:\n  enabled: true\n  max_ttl: 0s\n", "cache.max_ttl"),
        ("cache:\n  keys: []\n", "cache.keys"),
        ("cache:\n  size: 1mb\n", "size"),
        ("cache:\n  max_memory: lots\n", "cache.max_memory"),
    ] {
        let err = parse(&format!("{MINIMAL}{bad}")).unwrap_err();
        assert!(format!("{err:#}").contains(names), "{bad}: {err:#}");
    }
    let err = parse(
        "listen: \"127.0.0.1:6380\"\nupstream:\n  seeds: [\"127.0.0.1:7000\"]\n  connections_per_node: 2\ncache:\n  enabled: true\n",
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("upstream.connections_per_node: 1"),
        "{err:#}"
    );
}
