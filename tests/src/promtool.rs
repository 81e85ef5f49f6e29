//! `promtool` (Prometheus's own checker, from the Debian package `prometheus`) and the metric
//! contract of docs/metrics.md as data, for tests of the `/metrics` output, the alerting rules and
//! the Grafana dashboard in `deploy/`.
//!
//! [`METRICS`] is the one list of metric names, types and labels; every other list
//! ([`METRIC_NAMES`]) is derived from it. [`check_promql`] holds a PromQL expression against
//! it: every `slotgate_*`/`process_*` name must be a contract metric (or a histogram's
//! `_bucket`/`_sum`/`_count` series), every label matcher must name one of its labels, and a
//! label with a closed set of values may only be matched against those values.
//! [`exposition_problems`] holds a real `/metrics` body to the same list.
//!
//! Flags: `promtool check metrics` (2.42, Debian bookworm) has no lint switch; it exits 1 on a
//! parse error and 3 on a lint problem (missing HELP, a counter without `_total`, a bad unit
//! suffix, ...). docs/metrics.md says promtool must *accept* the output, so [`check_metrics`] treats
//! any non-zero exit, lint included, as a failure. (Newer promtool versions add
//! `check metrics --lint=none`; disabling the lint would defeat the point, so it is never
//! passed.) `promtool check rules` runs with `--lint=all --lint-fatal`, so duplicate rules
//! fail too.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::process::find_binary;

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic counter (name ends in `_total`).
    Counter,
    /// Gauge.
    Gauge,
    /// Histogram: exposed as `NAME_bucket{le}`, `NAME_sum`, `NAME_count`.
    Histogram,
}

/// One label of a metric.
#[derive(Debug, Clone, Copy)]
pub struct LabelSpec {
    /// Label name.
    pub name: &'static str,
    /// The values it can take; empty when open-ended (command names, `host:port`, versions).
    pub values: &'static [&'static str],
}

/// One metric family of the contract.
#[derive(Debug, Clone, Copy)]
pub struct MetricSpec {
    /// Family name (for histograms without `_bucket`/`_sum`/`_count`).
    pub name: &'static str,
    /// Type.
    pub kind: MetricKind,
    /// Labels, exactly these (besides `le` on histogram buckets).
    pub labels: &'static [LabelSpec],
}

const fn label(name: &'static str, values: &'static [&'static str]) -> LabelSpec {
    LabelSpec { name, values }
}

const fn metric(name: &'static str, kind: MetricKind, labels: &'static [LabelSpec]) -> MetricSpec {
    MetricSpec { name, kind, labels }
}

use MetricKind::{Counter, Gauge, Histogram};

/// Every metric slotgate exports (documented in docs/metrics.md). Names and labels
/// are a public API: alerts and dashboards depend on them.
pub const METRICS: &[MetricSpec] = &[
    metric("slotgate_client_connections", Gauge, &[]),
    metric("slotgate_client_connections_limit", Gauge, &[]),
    metric(
        "slotgate_client_connections_total",
        Counter,
        &[label(
            "result",
            &["accepted", "rejected_limit", "tls_error"],
        )],
    ),
    metric(
        "slotgate_client_closes_total",
        Counter,
        &[label(
            "reason",
            &["output_limit", "output_soft_limit", "pubsub_backlog"],
        )],
    ),
    metric("slotgate_buffered_bytes", Gauge, &[]),
    metric("slotgate_buffered_bytes_limit", Gauge, &[]),
    metric("slotgate_buffers_full_refusals_total", Counter, &[]),
    metric(
        "slotgate_auth_failures_total",
        Counter,
        &[label("reason", &["wrongpass", "noauth", "noperm"])],
    ),
    metric(
        "slotgate_commands_total",
        Counter,
        &[
            label("command", &[]),
            label("result", &["ok", "error", "redirected", "timeout"]),
        ],
    ),
    metric(
        "slotgate_command_duration_seconds",
        Histogram,
        &[label("command", &[])],
    ),
    metric(
        "slotgate_upstream_requests_total",
        Counter,
        &[label("node", &[])],
    ),
    metric(
        "slotgate_upstream_errors_total",
        Counter,
        &[
            label("node", &[]),
            label("kind", &["connect", "io", "timeout", "protocol"]),
        ],
    ),
    metric(
        "slotgate_upstream_connections",
        Gauge,
        &[
            label("node", &[]),
            label("kind", &["multiplexed", "dedicated"]),
        ],
    ),
    metric(
        "slotgate_upstream_duration_seconds",
        Histogram,
        &[label("node", &[])],
    ),
    metric(
        "slotgate_redirects_total",
        Counter,
        &[label("kind", &["moved", "ask"])],
    ),
    metric(
        "slotgate_retries_total",
        Counter,
        &[label(
            "reason",
            &[
                "tryagain",
                "clusterdown",
                "loading",
                "readonly_io",
                "unreachable",
                "readonly",
            ],
        )],
    ),
    metric(
        "slotgate_topology_refreshes_total",
        Counter,
        &[
            label("trigger", &["periodic", "moved", "error", "manual"]),
            label("result", &["ok", "error", "rejected"]),
        ],
    ),
    metric("slotgate_topology_slots_covered", Gauge, &[]),
    metric(
        "slotgate_topology_nodes",
        Gauge,
        &[label("role", &["primary", "replica"])],
    ),
    metric(
        "slotgate_topology_last_refresh_timestamp_seconds",
        Gauge,
        &[],
    ),
    metric("slotgate_ready", Gauge, &[]),
    metric(
        "slotgate_failovers_total",
        Counter,
        &[label("mode", &["cluster", "standalone", "sentinel"])],
    ),
    metric("slotgate_sentinel_primary", Gauge, &[label("address", &[])]),
    metric("slotgate_sentinels_reachable", Gauge, &[]),
    metric(
        "slotgate_commands_table_size",
        Gauge,
        &[label("source", &["static", "learned"])],
    ),
    metric("slotgate_tracking_keys", Gauge, &[]),
    metric(
        "slotgate_invalidations_total",
        Counter,
        &[label(
            "source",
            &["server", "own_write", "topology", "ttl", "memory"],
        )],
    ),
    metric(
        "slotgate_cache_requests_total",
        Counter,
        &[label("result", &["hit", "miss", "bypass"])],
    ),
    metric("slotgate_cache_bytes", Gauge, &[]),
    metric("slotgate_build_info", Gauge, &[label("version", &[])]),
    metric("slotgate_panics_total", Counter, &[]),
    metric("process_cpu_seconds_total", Counter, &[]),
    metric("process_resident_memory_bytes", Gauge, &[]),
    metric("process_virtual_memory_bytes", Gauge, &[]),
    metric("process_open_fds", Gauge, &[]),
    metric("process_max_fds", Gauge, &[]),
    metric("process_start_time_seconds", Gauge, &[]),
    metric("process_threads", Gauge, &[]),
];

const METRIC_COUNT: usize = METRICS.len();

const METRIC_NAME_ARRAY: [&str; METRIC_COUNT] = {
    let mut names = [""; METRIC_COUNT];
    let mut i = 0;
    while i < METRIC_COUNT {
        names[i] = METRICS[i].name;
        i += 1;
    }
    names
};

/// The family names of [`METRICS`], in the same order.
pub const METRIC_NAMES: &[&str] = &METRIC_NAME_ARRAY;

/// Labels Prometheus adds to every scraped series (target labels), allowed in any selector.
pub const TARGET_LABELS: &[&str] = &["job", "instance"];

/// The contract metric a series name belongs to: the family itself, or a histogram family's
/// `_bucket`, `_sum` or `_count` series. `None` if it is not in [`METRICS`].
pub fn metric_spec(series_name: &str) -> Option<&'static MetricSpec> {
    if let Some(spec) = METRICS.iter().find(|m| m.name == series_name) {
        return Some(spec);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let family = series_name.strip_suffix(suffix)?;
        METRICS
            .iter()
            .find(|m| m.name == family && m.kind == Histogram)
    })
}

/// Path of `promtool` on `PATH`.
///
/// # Panics
/// If there is none, with how to install it.
pub fn promtool() -> PathBuf {
    find_binary("promtool").unwrap_or_else(|| {
        panic!(
            "promtool not found on PATH: install the Debian package prometheus \
             (apt-get install --no-install-recommends prometheus), which ships /usr/bin/promtool"
        )
    })
}

fn describe(what: &str, out: &Output) -> String {
    let hint = if out.status.code() == Some(3) {
        " (exit 3: lint problems)"
    } else {
        ""
    };
    format!(
        "{what} failed: {}{hint}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(args: &[&std::ffi::OsStr], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(promtool());
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start promtool");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("promtool stdin");
        let text = text.to_owned();
        // Write on a thread: promtool may answer before reading everything.
        let writer = std::thread::spawn(move || {
            let _ = pipe.write_all(text.as_bytes());
        });
        let out = child.wait_with_output().expect("wait for promtool");
        let _ = writer.join();
        out
    } else {
        child.wait_with_output().expect("wait for promtool")
    }
}

/// `promtool check metrics` on Prometheus text-format `text` (a `/metrics` body).
///
/// # Panics
/// On any non-zero exit, parse errors and lint problems alike, with promtool's output.
pub fn check_metrics(text: &str) {
    let out = run(&["check".as_ref(), "metrics".as_ref()], Some(text));
    assert!(
        out.status.success(),
        "{}\ninput:\n{text}",
        describe("promtool check metrics", &out)
    );
}

/// `promtool check rules --lint=all --lint-fatal FILE`.
///
/// # Panics
/// If promtool rejects the file, with its output.
pub fn check_rules(path: impl AsRef<Path>) {
    let path = path.as_ref();
    let out = run(
        &[
            "check".as_ref(),
            "rules".as_ref(),
            "--lint=all".as_ref(),
            "--lint-fatal".as_ref(),
            path.as_os_str(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        describe(&format!("promtool check rules {}", path.display()), &out)
    );
}

/// `promtool test rules FILE` (rule unit tests; `rule_files` are relative to FILE).
///
/// # Panics
/// If a test fails, with promtool's output.
pub fn test_rules(path: impl AsRef<Path>) {
    let path = path.as_ref();
    let out = run(&["test".as_ref(), "rules".as_ref(), path.as_os_str()], None);
    assert!(
        out.status.success(),
        "{}",
        describe(&format!("promtool test rules {}", path.display()), &out)
    );
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

fn is_contract_prefix(word: &str) -> bool {
    word.starts_with("slotgate_") || word.starts_with("process_")
}

/// Every word in `text` that starts with `slotgate_` or `process_` (at a word boundary), in
/// order, duplicates included. For free text (YAML, JSON, Markdown) where only names matter.
pub fn metric_words(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    let word_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < bytes.len() {
        if word_char(bytes[i]) {
            let start = i;
            while i < bytes.len() && word_char(bytes[i]) {
                i += 1;
            }
            let word = &text[start..i];
            if is_contract_prefix(word) {
                words.push(word);
            }
        } else {
            i += 1;
        }
    }
    words
}

/// One `label OP "value"` inside a selector's braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    /// Label name.
    pub label: String,
    /// `=`, `!=`, `=~` or `!~`.
    pub op: String,
    /// The string value, unescaped only for `\"` and `\\`.
    pub value: String,
}

/// What [`parse_promql`] finds in an expression.
#[derive(Debug, Default, Clone)]
pub struct PromqlRefs {
    /// `slotgate_*`/`process_*` series names with the matchers of their selector.
    pub selectors: Vec<(String, Vec<Matcher>)>,
    /// Label names in `by (...)`, `without (...)`, `on (...)`, `ignoring (...)`,
    /// `group_left (...)`, `group_right (...)`.
    pub grouping_labels: Vec<String>,
}

/// Reads a quoted string starting at `bytes[i]` (a quote); returns (value, index after it).
fn read_string(text: &str, i: usize) -> Result<(String, usize), String> {
    let bytes = text.as_bytes();
    let quote = bytes[i];
    let mut value = Vec::new();
    let mut j = i + 1;
    while j < bytes.len() {
        match bytes[j] {
            b'\\' if quote != b'`' && j + 1 < bytes.len() => {
                value.push(bytes[j + 1]);
                j += 2;
            }
            c if c == quote => {
                return Ok((String::from_utf8_lossy(&value).into_owned(), j + 1));
            }
            c => {
                value.push(c);
                j += 1;
            }
        }
    }
    Err(format!("unterminated string at byte {i} of {text:?}"))
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Finds metric selectors and grouping labels in a PromQL expression (a small scanner, not
/// a full parser: promtool checks the syntax).
///
/// # Errors
/// On unterminated strings or malformed label matchers.
pub fn parse_promql(expr: &str) -> Result<PromqlRefs, String> {
    let bytes = expr.as_bytes();
    let mut refs = PromqlRefs::default();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            i = read_string(expr, i)?.1;
            continue;
        }
        if !is_ident_char(c) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_ident_char(bytes[i]) {
            i += 1;
        }
        let word = &expr[start..i];
        let next = skip_ws(bytes, i);
        let grouping = [
            "by",
            "without",
            "on",
            "ignoring",
            "group_left",
            "group_right",
        ];
        if grouping.contains(&word) && bytes.get(next) == Some(&b'(') {
            let close = expr[next..]
                .find(')')
                .map(|p| next + p)
                .ok_or_else(|| format!("unclosed {word}( in {expr:?}"))?;
            refs.grouping_labels.extend(
                expr[next + 1..close]
                    .split(',')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from),
            );
            i = close + 1;
            continue;
        }
        if !is_contract_prefix(word) {
            continue;
        }
        let mut matchers = Vec::new();
        if bytes.get(next) == Some(&b'{') {
            let mut j = next + 1;
            loop {
                j = skip_ws(bytes, j);
                match bytes.get(j) {
                    Some(b'}') => {
                        j += 1;
                        break;
                    }
                    Some(b',') => {
                        j += 1;
                        continue;
                    }
                    None => return Err(format!("unclosed {{ after {word} in {expr:?}")),
                    _ => {}
                }
                let lstart = j;
                while j < bytes.len() && is_ident_char(bytes[j]) {
                    j += 1;
                }
                let label = &expr[lstart..j];
                j = skip_ws(bytes, j);
                let op = ["=~", "!~", "!=", "="]
                    .into_iter()
                    .find(|op| expr[j..].starts_with(op))
                    .ok_or_else(|| format!("no matcher operator after {label:?} in {expr:?}"))?;
                j = skip_ws(bytes, j + op.len());
                if !matches!(bytes.get(j), Some(b'"' | b'\'' | b'`')) {
                    return Err(format!(
                        "no quoted value for {word}{{{label}{op}}} in {expr:?}"
                    ));
                }
                let (value, after) = read_string(expr, j)?;
                j = after;
                if label.is_empty() {
                    return Err(format!("empty label name in {word}{{...}} in {expr:?}"));
                }
                matchers.push(Matcher {
                    label: label.to_string(),
                    op: op.to_string(),
                    value,
                });
            }
            i = j;
        }
        refs.selectors.push((word.to_string(), matchers));
    }
    Ok(refs)
}

/// Holds a PromQL expression to the contract; returns every problem found (empty = fine):
/// unknown `slotgate_*`/`process_*` names, matchers on labels the metric does not have, values
/// a closed label never takes (for `=`/`!=`, and for each plain alternative of `=~`/`!~`),
/// and grouping labels no referenced metric has.
pub fn check_promql(expr: &str) -> Vec<String> {
    let refs = match parse_promql(expr) {
        Ok(refs) => refs,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    let mut known_labels: Vec<&str> = TARGET_LABELS.to_vec();
    for (name, matchers) in &refs.selectors {
        let Some(spec) = metric_spec(name) else {
            problems.push(format!("{name} is not a slotgate metric (see METRICS)"));
            continue;
        };
        let is_bucket = spec.kind == Histogram && name.ends_with("_bucket");
        known_labels.extend(spec.labels.iter().map(|l| l.name));
        if is_bucket {
            known_labels.push("le");
        }
        for m in matchers {
            if TARGET_LABELS.contains(&m.label.as_str()) || (is_bucket && m.label == "le") {
                continue;
            }
            let Some(l) = spec.labels.iter().find(|l| l.name == m.label) else {
                problems.push(format!("{name} has no label {:?}", m.label));
                continue;
            };
            if l.values.is_empty() {
                continue;
            }
            let values: Vec<&str> = if m.op.ends_with('~') {
                m.value
                    .split('|')
                    .filter(|v| v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                    .collect()
            } else {
                vec![m.value.as_str()]
            };
            for v in values {
                if !l.values.contains(&v) {
                    problems.push(format!(
                        "{name}{{{}}}: {v:?} is not one of {:?}",
                        l.name, l.values
                    ));
                }
            }
        }
    }
    for l in &refs.grouping_labels {
        if !known_labels.contains(&l.as_str()) {
            problems.push(format!(
                "grouping label {l:?} is on none of the metrics of the expression"
            ));
        }
    }
    problems
}

/// All labels the contract metrics in `expr` can carry, target labels included (for checking
/// legend templates such as `{{node}}`).
pub fn labels_available(expr: &str) -> Vec<&'static str> {
    let mut labels = TARGET_LABELS.to_vec();
    if let Ok(refs) = parse_promql(expr) {
        for (name, _) in &refs.selectors {
            if let Some(spec) = metric_spec(name) {
                labels.extend(spec.labels.iter().map(|l| l.name));
            }
        }
    }
    labels
}

/// Holds a `/metrics` body (Prometheus text format) to [`METRICS`]; returns every problem
/// (empty = fine): a `slotgate_*`/`process_*` family that is not in the contract or has another
/// type, a contract family without labels that is missing (labelled families may be absent
/// until something is counted, as client libraries print no empty vectors), a sample with a
/// label the contract does not list, or a value outside a closed label's set.
pub fn exposition_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut types: BTreeMap<&str, &str> = BTreeMap::new();
    let mut sampled: BTreeSet<&'static str> = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                types.insert(name, kind);
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        if !is_contract_prefix(name) {
            continue;
        }
        let Some(spec) = metric_spec(name) else {
            problems.push(format!("sample of unknown metric {name}"));
            continue;
        };
        sampled.insert(spec.name);
        if line[name_end..].starts_with('{') {
            let selector = format!("{name}{}", &line[name_end..]);
            let selector = selector
                .rsplit_once('}')
                .map(|(head, _)| format!("{head}}}"))
                .unwrap_or(selector);
            match parse_promql(&selector) {
                Ok(refs) => {
                    for (_, matchers) in refs.selectors {
                        for m in matchers {
                            let is_le = m.label == "le" && name.ends_with("_bucket");
                            match spec.labels.iter().find(|l| l.name == m.label) {
                                None if is_le => {}
                                None => problems.push(format!(
                                    "{line}: label {} is not in the contract",
                                    m.label
                                )),
                                Some(l)
                                    if !l.values.is_empty()
                                        && !l.values.contains(&m.value.as_str()) =>
                                {
                                    problems.push(format!(
                                        "{line}: {}={:?} is not one of {:?}",
                                        l.name, m.value, l.values
                                    ));
                                }
                                Some(_) => {}
                            }
                        }
                    }
                }
                Err(e) => problems.push(format!("{line}: {e}")),
            }
        }
    }
    for (name, kind) in &types {
        if !is_contract_prefix(name) {
            continue;
        }
        match METRICS.iter().find(|m| m.name == *name) {
            None => problems.push(format!("# TYPE {name}: not a contract metric")),
            Some(spec) => {
                let want = match spec.kind {
                    Counter => "counter",
                    Gauge => "gauge",
                    Histogram => "histogram",
                };
                if *kind != want {
                    problems.push(format!("{name} is a {kind}, the contract says {want}"));
                }
            }
        }
    }
    for spec in METRICS {
        if spec.labels.is_empty() && !types.contains_key(spec.name) {
            problems.push(format!("{} is missing", spec.name));
        }
        if types.contains_key(spec.name) != sampled.contains(spec.name) && spec.labels.is_empty() {
            problems.push(format!("{} has a TYPE line but no sample", spec.name));
        }
    }
    problems
}

/// [`check_metrics`] plus [`exposition_problems`].
///
/// # Panics
/// If promtool rejects `text` or it does not match the contract.
pub fn check_exposition(text: &str) {
    check_metrics(text);
    let problems = exposition_problems(text);
    assert!(
        problems.is_empty(),
        "/metrics does not match the contract (METRICS in tests/src/promtool.rs):\n{}",
        problems.join("\n")
    );
}
