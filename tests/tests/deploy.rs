//! The files in `deploy/` (deploy/README.md): the Prometheus alerting rules pass `promtool check
//! rules` and their unit tests (`promtool test rules`), the rules and the Grafana dashboard use
//! only contract metrics and labels (docs/metrics.md, `slotgate_tests::promtool::METRICS`), the
//! dashboard is well-formed, the real binary's `/metrics` passes `promtool check metrics` and
//! matches that same contract, the Kubernetes ConfigMap's slotgate.yaml passes
//! `slotgate check-config`, the Dockerfile, systemd unit and Kubernetes manifests agree
//! on ports, paths and shutdown timing, the Kubernetes example's TLS files and passwords come
//! from Secrets, its NetworkPolicy, ServiceMonitor, PrometheusRule and HPA fit the rest (and
//! `kubectl kustomize` renders them all where kubectl is installed), and the Dockerfile builds
//! the static binary `scripts/release.sh` makes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use slotgate_tests::admin::{http_get, scrape};
use slotgate_tests::promtool::{
    check_exposition, check_promql, check_rules, exposition_problems, labels_available,
    metric_spec, metric_words, promtool, test_rules, METRICS, METRIC_NAMES,
};
use slotgate_tests::{assert_eventually, shared_cluster, slotgate_bin, ProxyConfig};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn yaml(rel: &str) -> Value {
    serde_saphyr::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: not valid YAML: {e}"))
}

fn str_at<'a>(v: &'a Value, pointer: &str, what: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{what}: no string at {pointer}"))
}

/// `"10s"`, `"500ms"`, `"2m"` → seconds.
fn seconds(duration: &str) -> f64 {
    let d = duration.trim();
    let (num, mult) = if let Some(n) = d.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = d.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = d.strip_suffix('m') {
        (n, 60.0)
    } else {
        panic!("not a duration: {duration:?}")
    };
    num.parse::<f64>()
        .unwrap_or_else(|_| panic!("not a duration: {duration:?}"))
        * mult
}

/// Every alerting rule of alerts.yml.
fn alert_rules() -> Vec<Value> {
    let doc = yaml("deploy/prometheus/alerts.yml");
    let groups = doc["groups"].as_array().expect("alerts.yml: groups");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("group rules").clone())
        .collect()
}

// --- Prometheus rules -----------------------------------------------------------------------

#[test]
fn alert_rules_pass_promtool_check() {
    let out = Command::new(promtool())
        .arg("--version")
        .output()
        .expect("promtool --version");
    eprintln!(
        "{}",
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
    );
    check_rules(repo().join("deploy/prometheus/alerts.yml"));
}

#[test]
fn alert_rule_unit_tests_pass() {
    test_rules(repo().join("deploy/prometheus/alerts_test.yml"));
}

/// The alerts the deploy contract names are unit-tested both ways: some evaluation expects
/// them firing, another expects them silent.
#[test]
fn key_alerts_are_tested_firing_and_silent() {
    let doc = yaml("deploy/prometheus/alerts_test.yml");
    let cases: Vec<&Value> = doc["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().expect("alert_rule_test"))
        .collect();
    for alert in [
        "SlotgateSlotsNotCovered",
        "SlotgateClientConnectionsNearLimit",
        "SlotgateHighCommandLatency",
        "SlotgateSlotMapStale",
        "SlotgateCommandErrorRatio",
        "SlotgateDown",
    ] {
        let of_alert = || cases.iter().filter(|c| c["alertname"] == alert);
        let exp_len = |c: &&&Value| c["exp_alerts"].as_array().map_or(0, Vec::len);
        assert!(
            of_alert().any(|c| exp_len(&c) > 0),
            "alerts_test.yml never expects {alert} to fire"
        );
        assert!(
            of_alert().any(|c| exp_len(&c) == 0),
            "alerts_test.yml never expects {alert} to stay silent"
        );
    }
    // Every alert is at least checked to be silent on a healthy instance.
    let tested: BTreeSet<&str> = cases
        .iter()
        .filter_map(|c| c["alertname"].as_str())
        .collect();
    for rule in alert_rules() {
        let name = rule["alert"].as_str().expect("alert name");
        assert!(
            tested.contains(name),
            "alerts_test.yml does not test {name}"
        );
    }
}

#[test]
fn alerts_have_severity_summary_and_a_runbook_section() {
    let docs = read("docs/metrics.md");
    let headings: BTreeSet<&str> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(str::trim)
        .collect();
    let rules = alert_rules();
    assert!(rules.len() >= 10, "only {} alerts", rules.len());
    let mut names = BTreeSet::new();
    for rule in &rules {
        let name = rule["alert"]
            .as_str()
            .unwrap_or_else(|| panic!("not an alerting rule: {rule}"));
        assert!(names.insert(name), "alert {name} defined twice");
        let severity = str_at(rule, "/labels/severity", name);
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description"] {
            assert!(
                !str_at(rule, &format!("/annotations/{key}"), name).is_empty(),
                "{name}: empty {key}"
            );
        }
        let runbook = str_at(rule, "/annotations/runbook", name);
        assert_eq!(
            runbook,
            format!("docs/metrics.md#{}", name.to_ascii_lowercase()),
            "{name}: runbook annotation"
        );
        assert!(
            headings.contains(name),
            "docs/metrics.md has no `### {name}` section for the runbook link"
        );
    }
    for required in [
        "SlotgateDown",
        "SlotgateSlotsNotCovered",
        "SlotgateSlotMapStale",
        "SlotgateUpstreamErrors",
        "SlotgateRedirectStorm",
        "SlotgateHighCommandLatency",
        "SlotgateCommandErrorRatio",
        "SlotgateAuthFailures",
        "SlotgateClientConnectionsNearLimit",
        "SlotgateTlsHandshakeErrors",
    ] {
        assert!(names.contains(required), "no {required} alert");
    }
}

#[test]
fn alerts_use_only_contract_metrics_and_labels() {
    let text = read("deploy/prometheus/alerts.yml");
    for word in metric_words(&text) {
        assert!(
            metric_spec(word).is_some(),
            "alerts.yml mentions {word}, which is not a slotgate metric (METRICS in tests/src/promtool.rs)"
        );
    }
    let mut problems = Vec::new();
    for rule in alert_rules() {
        let name = rule["alert"].as_str().unwrap_or("?");
        let expr = rule["expr"].as_str().expect("expr");
        problems.extend(
            check_promql(expr)
                .into_iter()
                .map(|p| format!("{name}: {p}")),
        );
    }
    assert!(problems.is_empty(), "alerts.yml:\n{}", problems.join("\n"));
}

// --- Grafana ---------------------------------------------------------------------------------

fn dashboard() -> Value {
    serde_json::from_str(&read("deploy/grafana/slotgate.json"))
        .expect("deploy/grafana/slotgate.json is not valid JSON")
}

/// Every panel, rows' nested panels included.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// (panel title, expr, legendFormat) of every query.
fn queries(dash: &Value) -> Vec<(String, String, String)> {
    panels(dash)
        .into_iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            p["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |t| {
                    (
                        title.clone(),
                        t["expr"].as_str().unwrap_or("").to_string(),
                        t["legendFormat"].as_str().unwrap_or("").to_string(),
                    )
                })
        })
        .collect()
}

#[test]
fn grafana_dashboard_is_well_formed() {
    let dash = dashboard();
    let schema = dash["schemaVersion"].as_u64().expect("schemaVersion");
    assert!(schema >= 36, "schemaVersion {schema} < 36");
    assert!(!str_at(&dash, "/uid", "dashboard").is_empty());
    assert!(!str_at(&dash, "/title", "dashboard").is_empty());

    let vars = dash["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} template variable"))
    };
    let ds = var("datasource");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let instance = var("instance");
    assert_eq!(instance["type"], "query");
    assert_eq!(instance["datasource"]["uid"], "${datasource}");
    let definition = instance["definition"]
        .as_str()
        .expect("instance definition");
    assert!(definition.starts_with("label_values(") && definition.contains("instance"));

    let mut ids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for p in panels(&dash) {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} used twice");
        let title = p["title"].as_str().expect("panel title");
        assert!(titles.insert(title), "panel title {title:?} used twice");
        let grid = &p["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && grid["h"].as_u64().unwrap() > 0,
            "{title}: gridPos {grid}"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "{title}: datasource"
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no queries");
        for t in targets {
            assert_eq!(
                t["datasource"]["uid"], "${datasource}",
                "{title}: query datasource"
            );
            let expr = t["expr"].as_str().unwrap_or("");
            assert!(!expr.is_empty(), "{title}: empty expr");
            assert!(
                expr.contains("instance=~\"$instance\""),
                "{title}: {expr} ignores the $instance variable"
            );
        }
    }
    // The panels the deploy contract asks for.
    for wanted in [
        "Commands/s by command",
        "Error ratio",
        "Command latency p50 / p99",
        "Client connections vs limit",
        "Upstream requests/s per node",
        "Upstream errors/s per node",
        "Upstream latency p99 per node",
        "Redirects/s",
        "Retries/s",
        "Slots covered",
        "Topology refreshes/s",
        "Slot map age",
        "Readiness",
        "CPU",
        "Memory",
        "File descriptors",
    ] {
        assert!(titles.contains(wanted), "no panel {wanted:?}");
    }
}

#[test]
fn grafana_dashboard_uses_only_contract_metrics_and_shows_all_of_them() {
    let dash = dashboard();
    let raw = read("deploy/grafana/slotgate.json");
    let mut seen = BTreeSet::new();
    for word in metric_words(&raw) {
        let spec = metric_spec(word).unwrap_or_else(|| {
            panic!("slotgate.json mentions {word}, which is not a slotgate metric")
        });
        seen.insert(spec.name);
    }
    let mut problems = Vec::new();
    for (title, expr, legend) in queries(&dash) {
        problems.extend(
            check_promql(&expr)
                .into_iter()
                .map(|p| format!("{title}: {p}")),
        );
        let labels = labels_available(&expr);
        let mut rest = legend.as_str();
        while let Some(start) = rest.find("{{") {
            let end = rest[start..].find("}}").expect("unclosed {{ in legend") + start;
            let label = rest[start + 2..end].trim();
            if !labels.contains(&label) {
                problems.push(format!(
                    "{title}: legend {{{{{label}}}}} is no label of {expr}"
                ));
            }
            rest = &rest[end + 2..];
        }
    }
    assert!(
        problems.is_empty(),
        "slotgate.json:\n{}",
        problems.join("\n")
    );
    let missing: Vec<&&str> = METRIC_NAMES.iter().filter(|m| !seen.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard shows none of {missing:?}"
    );
}

/// promtool parses `exprs` (as recording rules of a temporary rule file).
fn check_promql_syntax(exprs: &[String]) {
    let mut rules = String::from("groups:\n  - name: queries\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: query:number_{i}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queries.yml");
    std::fs::write(&path, rules).unwrap();
    check_rules(&path);
}

/// Every dashboard query is valid PromQL (with the Grafana variables replaced by values).
#[test]
fn grafana_queries_are_valid_promql() {
    let exprs: Vec<String> = queries(&dashboard())
        .into_iter()
        .map(|(_, expr, _)| {
            expr.replace("$__rate_interval", "5m")
                .replace("$instance", ".*")
        })
        .collect();
    check_promql_syntax(&exprs);
}

/// The PromQL examples in docs/metrics.md (```promql blocks, one query a line) are valid and
/// use only contract metrics and labels.
#[test]
fn docs_promql_examples_are_valid() {
    let docs = read("docs/metrics.md");
    let mut exprs = Vec::new();
    let mut in_block = false;
    for line in docs.lines() {
        match line.trim() {
            "```promql" => in_block = true,
            "```" => in_block = false,
            l if in_block && !l.is_empty() && !l.starts_with('#') => exprs.push(l.to_string()),
            _ => {}
        }
    }
    assert!(exprs.len() >= 20, "only {} PromQL examples", exprs.len());
    let problems: Vec<String> = exprs
        .iter()
        .flat_map(|e| {
            check_promql(e)
                .into_iter()
                .map(move |p| format!("{e}: {p}"))
        })
        .collect();
    assert!(
        problems.is_empty(),
        "docs/metrics.md:\n{}",
        problems.join("\n")
    );
    check_promql_syntax(&exprs);
}

#[test]
fn metric_list_is_consistent() {
    assert_eq!(METRIC_NAMES.len(), METRICS.len());
    let unique: BTreeSet<&str> = METRIC_NAMES.iter().copied().collect();
    assert_eq!(unique.len(), METRIC_NAMES.len(), "duplicate metric names");
    for m in METRICS {
        assert_eq!(
            m.name.ends_with("_total"),
            m.kind == slotgate_tests::promtool::MetricKind::Counter,
            "{}: counters and only counters end in _total",
            m.name
        );
    }
    let docs = read("docs/metrics.md");
    for name in METRIC_NAMES {
        assert!(
            docs.contains(&format!("`{name}`")),
            "docs/metrics.md does not document {name}"
        );
    }
    for word in metric_words(&docs) {
        assert!(
            metric_spec(word).is_some(),
            "docs/metrics.md mentions unknown metric {word}"
        );
    }
}

/// The contract checkers find the mistakes they exist for.
#[test]
fn contract_checkers_catch_mistakes() {
    assert!(check_promql(
        r#"sum by (node, le) (rate(slotgate_upstream_duration_seconds_bucket{node="a:1"}[5m]))"#
    )
    .is_empty());
    assert!(
        check_promql(r#"slotgate_redirects_total{kind=~"moved|ask", job="slotgate"}"#).is_empty()
    );
    for bad in [
        r#"slotgate_redirect_total"#,
        r#"slotgate_redirects_total{kind="movde"}"#,
        r#"slotgate_redirects_total{kind=~"moved|asking"}"#,
        r#"slotgate_redirects_total{reason="moved"}"#,
        r#"sum by (nodee) (rate(slotgate_upstream_requests_total[5m]))"#,
        r#"slotgate_commands_total_bucket"#,
        r#"slotgate_ready{le="1"}"#,
        r#"process_open_fd"#,
    ] {
        assert!(!check_promql(bad).is_empty(), "check_promql accepts {bad}");
    }
    let good =
        "# HELP slotgate_ready 1 when ready.\n# TYPE slotgate_ready gauge\nslotgate_ready 1\n";
    let problems = exposition_problems(good);
    assert!(
        problems.iter().all(|p| p.ends_with("is missing")),
        "{problems:?}"
    );
    let bad = "# TYPE slotgate_ready counter\nslotgate_ready{x=\"1\"} 1\n# TYPE slotgate_foo gauge\nslotgate_foo 2\n";
    assert!(
        exposition_problems(bad).len() >= 3,
        "{:?}",
        exposition_problems(bad)
    );
    slotgate_tests::promtool::check_metrics(good);
    let lint = std::panic::catch_unwind(|| {
        slotgate_tests::promtool::check_metrics("# TYPE slotgate_x counter\nslotgate_x 1\n")
    });
    assert!(
        lint.is_err(),
        "check_metrics accepted a counter without _total and HELP"
    );
}

/// The real binary's `/metrics`, after some traffic, passes promtool and is exactly the
/// contract the alerts and the dashboard are checked against.
#[test]
fn real_metrics_output_matches_the_contract() {
    let cluster = shared_cluster();
    let proxy = ProxyConfig::new(&cluster.seeds()).admin().spawn();
    let admin = proxy.admin_addr().expect("admin port");
    assert_eventually!(
        matches!(http_get(admin, "/readyz"), Ok((200, _))),
        std::time::Duration::from_secs(10),
        "never ready"
    );
    let prefix = slotgate_tests::unique_key_prefix("deploy");
    for i in 0..50 {
        let key = format!("{prefix}{i}");
        assert_eq!(cluster.cli(proxy.port(), &["SET", &key, "v"]), "OK");
    }
    cluster.cli(proxy.port(), &["NOSUCHCOMMAND"]);
    let scraped = scrape(admin);
    check_exposition(&scraped.text);
    for family in [
        "slotgate_commands_total",
        "slotgate_command_duration_seconds",
        "slotgate_upstream_requests_total",
        "slotgate_upstream_connections",
        "slotgate_client_connections_total",
        "slotgate_topology_nodes",
        "slotgate_build_info",
    ] {
        assert!(
            scraped.text.contains(&format!("# TYPE {family} ")),
            "no {family} after traffic:\n{}",
            scraped.text
        );
    }
}

// --- Kubernetes, Docker, systemd ------------------------------------------------------------

/// The `${VAR}` names in a config text.
fn env_refs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let end = rest[start..].find('}').expect("unclosed ${") + start;
        out.push(rest[start + 2..end].to_string());
        rest = &rest[end + 1..];
    }
    out
}

/// Where the Deployment projects the Secret `slotgate-tls`.
const SECRET_TLS_DIR: &str = "/etc/slotgate/tls/";

/// Every manifest of the kustomization, by file name.
fn kubernetes_manifests() -> std::collections::BTreeMap<String, Value> {
    let kustomization = yaml("deploy/kubernetes/kustomization.yaml");
    kustomization["resources"]
        .as_array()
        .expect("kustomization resources")
        .iter()
        .map(|r| {
            let file = r.as_str().expect("resource is a file name");
            (file.to_string(), yaml(&format!("deploy/kubernetes/{file}")))
        })
        .collect()
}

/// The one manifest of `kind` (named `name` when given).
fn manifest<'a>(
    manifests: &'a std::collections::BTreeMap<String, Value>,
    kind: &str,
    name: Option<&str>,
) -> &'a Value {
    let found: Vec<&Value> = manifests
        .values()
        .filter(|m| m["kind"] == kind && name.is_none_or(|n| m["metadata"]["name"] == n))
        .collect();
    match found.as_slice() {
        [one] => one,
        other => panic!("{} manifests of kind {kind} named {name:?}", other.len()),
    }
}

/// Whether every label of `selector` is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .expect("matchLabels")
        .iter()
        .all(|(k, v)| &labels[k] == v)
}

/// A NetworkPolicy rule port (`port: redis` or `port: 6380`) is `name` or `number`.
fn rule_allows_port(rule: &Value, name: &str, number: u64) -> bool {
    rule["ports"].as_array().is_some_and(|ports| {
        ports
            .iter()
            .any(|p| p["port"] == name || p["port"].as_u64() == Some(number))
    })
}

fn configmap_config() -> String {
    let cm = yaml("deploy/kubernetes/configmap.yaml");
    assert_eq!(cm["kind"], "ConfigMap");
    str_at(&cm, "/data/slotgate.yaml", "configmap.yaml").to_string()
}

fn container(deployment: &Value) -> &Value {
    let containers = deployment
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .expect("containers");
    containers
        .iter()
        .find(|c| c["name"] == "slotgate")
        .expect("container slotgate")
}

/// The ConfigMap's slotgate.yaml is a valid slotgate config: `slotgate check-config` accepts
/// it with the Secret-backed variables set, and masks the secret.
#[test]
fn kubernetes_configmap_passes_check_config() {
    let config = configmap_config();
    let parsed: Value = serde_saphyr::from_str(&config).expect("slotgate.yaml is YAML");
    assert_eq!(
        parsed.pointer("/admin/listen").and_then(Value::as_str),
        Some("0.0.0.0:9090"),
        "admin.listen must be reachable by the kubelet and Prometheus"
    );
    assert_eq!(parsed["listen"], "0.0.0.0:6380");

    // The TLS files are projected from a Secret under /etc/slotgate/tls/ (see
    // kubernetes_tls_and_passwords_come_from_secrets): give check-config real ones there.
    let dir = tempfile::tempdir().unwrap();
    let pki = slotgate_tests::tls::TestPki::generate();
    for (pointer, file) in [
        ("/tls/cert", &pki.server_cert),
        ("/tls/key", &pki.server_key),
    ] {
        let path = str_at(&parsed, pointer, "slotgate.yaml");
        let name = path
            .strip_prefix(SECRET_TLS_DIR)
            .unwrap_or_else(|| panic!("tls file {path} is not under {SECRET_TLS_DIR}"));
        std::fs::copy(file, dir.path().join(name)).unwrap();
    }
    let config = config.replace(SECRET_TLS_DIR, &format!("{}/", dir.path().display()));
    let path = dir.path().join("slotgate.yaml");
    std::fs::write(&path, &config).unwrap();
    let mut cmd = Command::new(slotgate_bin());
    cmd.arg("check-config").arg(&path);
    let secret = "k8s-secret-value-must-not-be-printed";
    let vars = env_refs(&config);
    assert!(
        !vars.is_empty(),
        "the ConfigMap should take its password from ${{VAR}}"
    );
    for var in &vars {
        cmd.env(var, secret);
    }
    let out = cmd.output().expect("run slotgate check-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "slotgate check-config rejects deploy/kubernetes/configmap.yaml's slotgate.yaml:\n{stderr}{stdout}"
    );
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "secret printed:\n{stdout}"
    );
}

#[test]
fn kubernetes_manifests_agree_with_the_config() {
    let config_text = configmap_config();
    let config: Value = serde_saphyr::from_str(&config_text).unwrap();
    let port_of = |addr: &str| -> u64 {
        addr.rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {addr:?}"))
    };
    let listen_port = port_of(str_at(&config, "/listen", "config"));
    let admin_port = port_of(str_at(&config, "/admin/listen", "config"));
    let grace = seconds(str_at(&config, "/shutdown_grace", "config"));

    let kustomization = yaml("deploy/kubernetes/kustomization.yaml");
    let resources: Vec<&str> = kustomization["resources"]
        .as_array()
        .expect("kustomization resources")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut manifests: Vec<String> = std::fs::read_dir(repo().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    manifests.sort();
    let mut listed: Vec<String> = resources.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(listed, manifests, "kustomization.yaml resources vs files");

    let dep = yaml("deploy/kubernetes/deployment.yaml");
    assert_eq!(dep["kind"], "Deployment");
    let pod_labels = &dep["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&dep["spec"]["selector"]["matchLabels"], pod_labels);
    let c = container(&dep);
    let ports = c["ports"].as_array().expect("ports");
    let port_named = |name: &str| {
        ports
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port named {name}"))
    };
    assert_eq!(port_named("redis"), listen_port);
    assert_eq!(port_named("admin"), admin_port);
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        let port = &c[probe]["httpGet"]["port"];
        assert!(
            port == "admin" || port.as_u64() == Some(admin_port),
            "{probe} port {port}"
        );
    }
    let annotations = &dep["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], admin_port.to_string());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    // SIGTERM comes after preStop; the pod must outlive preStop + shutdown_grace.
    let pre_stop = c
        .pointer("/lifecycle/preStop/exec/command")
        .and_then(Value::as_array)
        .map(|cmd| match cmd.as_slice() {
            [s, n] if s == "sleep" => n.as_str().and_then(|n| n.parse::<f64>().ok()).unwrap(),
            other => panic!("unexpected preStop {other:?}"),
        })
        .unwrap_or(0.0);
    let termination = dep
        .pointer("/spec/template/spec/terminationGracePeriodSeconds")
        .and_then(Value::as_f64)
        .expect("terminationGracePeriodSeconds");
    assert!(
        termination > pre_stop + grace,
        "terminationGracePeriodSeconds {termination} <= preStop {pre_stop}s + shutdown_grace {grace}s"
    );

    // The config file is where the image's entrypoint looks, from the ConfigMap.
    let mount = c["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["name"] == "config")
        .expect("config volume mount");
    assert_eq!(mount["mountPath"], "/etc/slotgate");
    let dockerfile = read("deploy/Dockerfile");
    assert!(dockerfile.contains(
        r#"ENTRYPOINT ["/usr/local/bin/slotgate", "--config", "/etc/slotgate/slotgate.yaml"]"#
    ));
    assert!(
        c.get("args").is_none() && c.get("command").is_none(),
        "the entrypoint already has --config"
    );

    // Every ${VAR} of the config comes from a Secret.
    let env = c["env"].as_array().expect("env");
    for var in env_refs(&config_text) {
        let e = env
            .iter()
            .find(|e| e["name"] == var.as_str())
            .unwrap_or_else(|| panic!("container env lacks {var}, which the config expands"));
        assert!(
            e.pointer("/valueFrom/secretKeyRef/name").is_some(),
            "{var} should come from a Secret"
        );
    }

    // Non-root, matching the image's user.
    let uid = dep
        .pointer("/spec/template/spec/securityContext/runAsUser")
        .and_then(Value::as_u64)
        .expect("runAsUser");
    assert!(uid > 0);
    assert!(
        dockerfile.contains(&format!("USER {uid}:")),
        "Dockerfile USER is not {uid}"
    );

    let svc = yaml("deploy/kubernetes/service.yaml");
    assert_eq!(svc["kind"], "Service");
    assert_eq!(&svc["spec"]["selector"], pod_labels);
    for p in svc["spec"]["ports"].as_array().expect("service ports") {
        let target = &p["targetPort"];
        assert!(
            target
                .as_str()
                .is_some_and(|t| ports.iter().any(|cp| cp["name"] == t))
                || target.as_u64() == Some(listen_port),
            "service targetPort {target}"
        );
    }

    let pdb = yaml("deploy/kubernetes/poddisruptionbudget.yaml");
    assert_eq!(pdb["kind"], "PodDisruptionBudget");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], pod_labels);
}

/// The Deployment's config volume puts the config file and the Secret's TLS files where the
/// config names them, the key readable only by the pod's group; every user's password is a
/// `${VAR}` (the main test checks that each comes from a Secret).
#[test]
fn kubernetes_tls_and_passwords_come_from_secrets() {
    let config: Value = serde_saphyr::from_str(&configmap_config()).unwrap();
    let manifests = kubernetes_manifests();
    let dep = manifest(&manifests, "Deployment", None);
    let volume = dep
        .pointer("/spec/template/spec/volumes")
        .and_then(Value::as_array)
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "config")
        .expect("volume config");
    // path in /etc/slotgate → (source kind, object name, key, mode)
    let mut files = std::collections::BTreeMap::new();
    for source in volume["projected"]["sources"]
        .as_array()
        .expect("a projected volume")
    {
        for (kind, src) in source.as_object().expect("source") {
            for item in src["items"].as_array().expect("items") {
                files.insert(
                    format!("/etc/slotgate/{}", str_at(item, "/path", "item")),
                    (
                        kind.clone(),
                        str_at(src, "/name", "source").to_string(),
                        str_at(item, "/key", "item").to_string(),
                        item["mode"].as_u64(),
                    ),
                );
            }
        }
    }
    let (kind, name, _, _) = &files["/etc/slotgate/slotgate.yaml"];
    assert_eq!((kind.as_str(), name.as_str()), ("configMap", "slotgate"));
    for (pointer, key) in [("/tls/cert", "tls.crt"), ("/tls/key", "tls.key")] {
        let path = str_at(&config, pointer, "slotgate.yaml");
        assert!(path.starts_with(SECRET_TLS_DIR), "{path}");
        let (kind, name, item_key, mode) = files
            .get(path)
            .unwrap_or_else(|| panic!("the config volume does not provide {path}"));
        assert_eq!(
            (kind.as_str(), item_key.as_str()),
            ("secret", key),
            "{path} should be the kubernetes.io/tls Secret's {key}"
        );
        assert_ne!(
            name, "slotgate",
            "the TLS Secret is its own (kubectl create secret tls)"
        );
        if key == "tls.key" {
            let mode = mode.expect("the key file's mode is set");
            assert_eq!(
                mode & 0o007,
                0,
                "tls.key mode {mode:o} is readable by others"
            );
            let group = dep.pointer("/spec/template/spec/securityContext/fsGroup");
            assert_eq!(
                group.and_then(Value::as_u64),
                dep.pointer("/spec/template/spec/securityContext/runAsGroup")
                    .and_then(Value::as_u64),
                "fsGroup must be the process's group to read the key"
            );
        }
    }
    let users = config["users"].as_array().expect("users configured");
    assert!(!users.is_empty());
    for user in users {
        let name = str_at(user, "/name", "user");
        let password = str_at(user, "/password", name);
        assert!(
            password.starts_with("${") && password.ends_with('}'),
            "user {name}: password should come from the environment (${{VAR}})"
        );
        assert!(
            !str_at(user, "/rules", name).is_empty(),
            "user {name}: no rules"
        );
    }
}

/// The NetworkPolicy selects the pods, lets clients reach the Redis port and only a named
/// namespace the admin port, and lets slotgate reach DNS and the seeds' port.
#[test]
fn kubernetes_network_policy_fits_the_ports() {
    let config: Value = serde_saphyr::from_str(&configmap_config()).unwrap();
    let manifests = kubernetes_manifests();
    let dep = manifest(&manifests, "Deployment", None);
    let pod_labels = &dep["spec"]["template"]["metadata"]["labels"];
    let policy = manifest(&manifests, "NetworkPolicy", None);
    assert!(selects(
        &policy["spec"]["podSelector"]["matchLabels"],
        pod_labels
    ));
    let types = &policy["spec"]["policyTypes"];
    assert_eq!(types, &serde_json::json!(["Ingress", "Egress"]));
    let ingress = policy["spec"]["ingress"].as_array().expect("ingress");
    let egress = policy["spec"]["egress"].as_array().expect("egress");
    let port_of = |addr: &str| -> u64 { addr.rsplit_once(':').unwrap().1.parse().unwrap() };
    let listen = port_of(str_at(&config, "/listen", "config"));
    let admin = port_of(str_at(&config, "/admin/listen", "config"));
    assert!(
        ingress.iter().any(|r| rule_allows_port(r, "redis", listen)),
        "no ingress rule for the Redis port"
    );
    let admin_rules: Vec<&Value> = ingress
        .iter()
        .filter(|r| rule_allows_port(r, "admin", admin))
        .collect();
    assert!(
        !admin_rules.is_empty(),
        "Prometheus cannot reach the admin port"
    );
    for rule in admin_rules {
        assert!(
            rule["from"].as_array().is_some_and(|f| !f.is_empty()),
            "the admin port (no authentication) is open to every pod"
        );
    }
    assert!(
        egress.iter().any(|r| rule_allows_port(r, "dns", 53)),
        "no egress to DNS"
    );
    for seed in config["upstream"]["seeds"].as_array().expect("seeds") {
        let port = port_of(seed.as_str().unwrap());
        assert!(
            egress.iter().any(|r| rule_allows_port(r, "", port)),
            "no egress to the seeds' port {port}"
        );
    }
}

/// The ServiceMonitor scrapes the admin port through the metrics Service (and only that
/// Service) under job="slotgate", which the alerts select; the PrometheusRule carries
/// exactly the groups of deploy/prometheus/alerts.yml.
#[test]
fn kubernetes_prometheus_operator_objects_match_the_rules_and_the_job() {
    let config: Value = serde_saphyr::from_str(&configmap_config()).unwrap();
    let admin_port: u64 = str_at(&config, "/admin/listen", "config")
        .rsplit_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap();
    let manifests = kubernetes_manifests();
    let monitor = manifest(&manifests, "ServiceMonitor", None);
    let selector = &monitor["spec"]["selector"]["matchLabels"];
    let services: Vec<&Value> = manifests
        .values()
        .filter(|m| m["kind"] == "Service")
        .collect();
    let chosen: Vec<&&Value> = services
        .iter()
        .filter(|s| selects(selector, &s["metadata"]["labels"]))
        .collect();
    let [service] = chosen.as_slice() else {
        panic!(
            "the ServiceMonitor selects {} Services, not one",
            chosen.len()
        )
    };
    let endpoints = monitor["spec"]["endpoints"].as_array().expect("endpoints");
    assert!(!endpoints.is_empty());
    for endpoint in endpoints {
        assert_eq!(endpoint["path"], "/metrics");
        let port = service["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == endpoint["port"])
            .unwrap_or_else(|| panic!("the metrics Service has no port {}", endpoint["port"]));
        let target = &port["targetPort"];
        assert!(
            target == "admin" || target.as_u64() == Some(admin_port),
            "metrics Service targetPort {target}"
        );
    }
    let job_label = str_at(monitor, "/spec/jobLabel", "ServiceMonitor");
    assert_eq!(
        service["metadata"]["labels"][job_label], "slotgate",
        "the job label would not be job=\"slotgate\", which the alerts select"
    );
    assert!(read("deploy/prometheus/alerts.yml").contains("job=\"slotgate\""));
    // The client Service does not expose the admin port.
    let clients = manifest(&manifests, "Service", Some("slotgate"));
    for p in clients["spec"]["ports"].as_array().expect("ports") {
        assert_ne!(
            p["targetPort"], "admin",
            "the client Service exposes the admin port"
        );
    }

    let rule = manifest(&manifests, "PrometheusRule", None);
    assert!(
        rule["spec"]["groups"] == yaml("deploy/prometheus/alerts.yml")["groups"],
        "prometheusrule.yaml's spec.groups differ from deploy/prometheus/alerts.yml's groups: \
         copy them over (indented under spec:)"
    );
}

/// The HPA scales the Deployment on CPU, which the container requests, and owns the replica
/// count; the PodDisruptionBudget never blocks every pod.
#[test]
fn kubernetes_hpa_owns_the_replica_count() {
    let manifests = kubernetes_manifests();
    let dep = manifest(&manifests, "Deployment", None);
    let hpa = manifest(&manifests, "HorizontalPodAutoscaler", None);
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    let target = &hpa["spec"]["scaleTargetRef"];
    assert_eq!(target["kind"], "Deployment");
    assert_eq!(target["name"], dep["metadata"]["name"]);
    assert!(
        dep["spec"].get("replicas").is_none(),
        "deployment.yaml sets replicas, which every kubectl apply would reset under the HPA"
    );
    let min = hpa["spec"]["minReplicas"].as_u64().expect("minReplicas");
    let max = hpa["spec"]["maxReplicas"].as_u64().expect("maxReplicas");
    assert!(
        2 <= min && min <= max,
        "minReplicas {min}, maxReplicas {max}"
    );
    for metric in hpa["spec"]["metrics"].as_array().expect("metrics") {
        if let Some(resource) = metric["resource"]["name"].as_str() {
            assert!(
                container(dep)
                    .pointer(&format!("/resources/requests/{resource}"))
                    .is_some(),
                "the HPA scales on {resource}, which the container does not request"
            );
        }
    }
    let pdb = manifest(&manifests, "PodDisruptionBudget", None);
    let unavailable = pdb["spec"]["maxUnavailable"]
        .as_u64()
        .expect("maxUnavailable");
    assert!(unavailable >= 1 && unavailable < min);
}

/// Every manifest names itself and carries the app label; `kubectl kustomize` (where kubectl
/// is installed) renders exactly those objects with the kustomization's label.
#[test]
fn kubernetes_kustomization_renders_every_manifest() {
    let manifests = kubernetes_manifests();
    let mut expected = BTreeSet::new();
    for (file, m) in &manifests {
        let kind = str_at(m, "/kind", file).to_string();
        let name = str_at(m, "/metadata/name", file).to_string();
        assert!(!str_at(m, "/apiVersion", file).is_empty());
        assert_eq!(
            m["metadata"]["labels"]["app.kubernetes.io/name"], "slotgate",
            "{file}: app.kubernetes.io/name label"
        );
        assert!(
            expected.insert((kind, name)),
            "{file}: a second object of that kind and name"
        );
    }
    for kind in [
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(
            expected.iter().any(|(k, _)| k == kind),
            "no {kind} in deploy/kubernetes"
        );
    }
    let Some(kubectl) = slotgate_tests::process::find_binary("kubectl") else {
        eprintln!("kubectl not installed: kustomize rendering not checked (manifests parsed)");
        return;
    };
    let out = Command::new(kubectl)
        .args(["kustomize"])
        .arg(repo().join("deploy/kubernetes"))
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize deploy/kubernetes:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered: Vec<Value> = serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout))
        .expect("kubectl kustomize output is YAML");
    let mut got = BTreeSet::new();
    for m in &rendered {
        assert_eq!(
            m["metadata"]["labels"]["app.kubernetes.io/part-of"], "slotgate",
            "rendered {} without the kustomization's label",
            m["kind"]
        );
        got.insert((
            str_at(m, "/kind", "rendered").to_string(),
            str_at(m, "/metadata/name", "rendered").to_string(),
        ));
    }
    assert_eq!(got, expected, "kubectl kustomize rendered other objects");
}

/// The image is built by scripts/release.sh in a multi-stage build: the same static musl
/// binary as the release archive, on an empty base with only the CA bundle the upstream TLS
/// default reads. The script itself is valid shell and builds that target, locked.
#[test]
fn dockerfile_builds_the_release_binary() {
    let dockerfile = read("deploy/Dockerfile");
    for needle in [
        "FROM rust:1.95-bookworm AS build",
        "musl-tools",
        "rustup target add x86_64-unknown-linux-musl",
        "scripts/release.sh --out /dist",
        "FROM scratch",
        "COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt",
        "COPY --from=build /out/slotgate /usr/local/bin/slotgate",
        "EXPOSE 6380 9090",
        "STOPSIGNAL SIGTERM",
    ] {
        assert!(dockerfile.contains(needle), "Dockerfile lacks {needle:?}");
    }
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(
        froms.last(),
        Some(&"FROM scratch"),
        "the runtime stage: {froms:?}"
    );
    let ignore = read("deploy/Dockerfile.dockerignore");
    for excluded in ["target", "dist", ".git"] {
        assert!(
            ignore.lines().any(|l| l == excluded),
            "build context keeps {excluded}"
        );
    }

    let script = read("scripts/release.sh");
    for needle in [
        "cargo build --release --locked --target \"$TARGET\" -p slotgate",
        "TARGET=x86_64-unknown-linux-musl",
        "sha256sum",
        "-x86_64-linux-musl",
    ] {
        assert!(script.contains(needle), "release.sh lacks {needle:?}");
    }
    let path = repo().join("scripts/release.sh");
    let syntax = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    let help = Command::new(&path).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.status.success() && text.contains("SHA256SUMS"),
        "--help:\n{text}"
    );
    let bad = Command::new(&path).arg("--bogus").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn dockerfile_and_systemd_unit_agree() {
    let unit = read("deploy/systemd/slotgate.service");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("slotgate.service has no {key}="))
    };
    assert_eq!(
        value("ExecStart"),
        "/usr/local/bin/slotgate --config /etc/slotgate/slotgate.yaml"
    );
    assert_eq!(value("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(value("Type"), "simple");
    assert_eq!(value("Restart"), "on-failure");
    assert_eq!(value("NoNewPrivileges"), "yes");
    assert_eq!(value("ProtectSystem"), "strict");
    assert_eq!(value("PrivateTmp"), "yes");
    assert_eq!(value("LimitNOFILE"), "65536");
    // The default shutdown_grace is 10s (docs/configuration.md).
    let stop = seconds(value("TimeoutStopSec"));
    assert!(
        stop > 10.0,
        "TimeoutStopSec {stop}s must exceed the default shutdown_grace 10s"
    );
}
