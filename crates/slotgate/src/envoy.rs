//! `slotgate import-envoy`: converts an Envoy v3 bootstrap (YAML or JSON) whose listener runs
//! the `redis_proxy` filter in front of an `envoy.clusters.redis` cluster (or a cluster of one
//! server) into a slotgate configuration (docs/migrating-from-envoy.md).
//!
//! The document is read as a generic tree ([`tree`], with Envoy's shared messages in
//! [`core_v3`]); the listener ([`listener`], with its filter in [`redis_proxy`], its users in
//! [`users`] and TLS in [`tls`]) and the cluster ([`cluster`]) fill a
//! [`Converted`](output::Converted), which [`output`] writes as YAML. Every field is either
//! converted, noted (no change in behaviour), or listed as not carried over; the latter make
//! the command exit with status 2.

mod cluster;
mod core_v3;
mod listener;
mod output;
mod redis_proxy;
mod report;
mod tls;
mod tree;
mod users;

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use core_v3::address;
use report::Report;
pub use report::{Finding, ImportError};
use tree::Node;

/// A converted configuration and what the conversion had to say.
#[derive(Debug)]
pub struct Import {
    /// The slotgate configuration, with the findings as comments on top.
    pub yaml: String,
    /// What could not be carried over (exit status 2 when not empty); the remarks that do not
    /// change behaviour are only in the YAML's comments.
    pub lost: Vec<Finding>,
}

/// Converts Envoy bootstrap `text`; `source` names it in the output's header.
///
/// # Errors
/// Text that is not YAML or JSON, no redis_proxy listener, no cluster it routes to, a
/// cluster that is neither a Redis Cluster nor one server, or a value of the wrong type; the
/// error names its YAML path.
pub fn convert(text: &str, source: &str) -> Result<Import, ImportError> {
    let doc = tree::parse(text)?;
    let mut report = Report::default();
    let converted = bootstrap(&Node::root(&doc), &mut report)?;
    let yaml = output::to_yaml(&converted, source, &report);
    Ok(Import {
        yaml,
        lost: report.lost,
    })
}

fn bootstrap(root: &Node<'_>, report: &mut Report) -> Result<output::Converted, ImportError> {
    let mut top = root
        .obj()
        .map_err(|_| root.error("not an Envoy bootstrap: the document is not a mapping"))?;
    let mut out = output::Converted::default();
    if let Some(admin) = top.take("admin") {
        out.admin_listen = admin_listen(&admin, report)?;
    }
    top.lose_each(
        report,
        &[(
            "dynamic_resources",
            "resources from a control plane (xDS): only static_resources are converted",
        )],
    );
    let statics = top.take("static_resources").ok_or_else(|| {
        root.error(
            "no static_resources: nothing to convert (resources from a control plane are not read)",
        )
    })?;
    top.note_each(
        report,
        &[
            (
                "stats_sinks",
                "slotgate exports Prometheus metrics on admin.listen (/metrics)",
            ),
            (
                "stats_config",
                "slotgate's metric names are fixed (docs/metrics.md)",
            ),
        ],
    );
    top.note_rest(report, "ignored: not part of the Redis path");
    let mut statics = statics.obj()?;
    let route = listener::convert(&statics.require("listeners")?, &mut out, report)?;
    let clusters = statics.require("clusters")?;
    let target = cluster::find(&clusters, &route.cluster).map_err(|e| ImportError {
        message: format!("{} (named at {})", e.message, route.path),
        ..e
    })?;
    cluster::convert(&target, &mut out.upstream, report)?;
    statics.note_each(
        report,
        &[(
            "secrets",
            "static secrets are only used through SDS references, listed where they occur",
        )],
    );
    statics.finish(report);
    Ok(out)
}

/// `admin.address` → `admin.listen`.
fn admin_listen(node: &Node<'_>, report: &mut Report) -> Result<Option<String>, ImportError> {
    let mut obj = node.obj()?;
    let listen = match obj.take("address") {
        Some(a) => address(&a, report)?,
        None => None,
    };
    if let Some(listen) = &listen {
        report.literal_only(&node.path, listen, "admin.listen");
        report.note(
            &node.path,
            "slotgate's admin port serves /metrics, /healthz, /readyz and \
                /topology (read only); Envoy's /stats/prometheus and admin \
                commands are gone",
        );
    }
    obj.note_rest(report, "ignored: slotgate's admin port has no such setting");
    Ok(listen)
}

/// `slotgate import-envoy FILE [-o OUT]`: converts FILE, writes the configuration to OUT
/// (stdout without), lists what did not carry over on stderr.
///
/// Exit status: 0 when everything carried over, 2 when something did (the configuration is
/// still written), 1 when FILE cannot be read or converted, or OUT cannot be written.
pub fn command(file: &Path, out: Option<&Path>) -> ExitCode {
    let import = match std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read it: {e}"))
        .and_then(|text| convert(&text, &file.display().to_string()).map_err(|e| e.to_string()))
    {
        Ok(import) => import,
        Err(e) => {
            eprintln!("slotgate: import-envoy: {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = write_output(out, &import.yaml) {
        let name = out.map_or("stdout".into(), |p| p.display().to_string());
        eprintln!("slotgate: import-envoy: cannot write {name}: {e}");
        return ExitCode::FAILURE;
    }
    for finding in &import.lost {
        eprintln!("{}: {}", finding.path, finding.message);
    }
    if import.lost.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "slotgate: import-envoy: {} item(s) above not carried over; \
            the configuration was written with them listed on top",
        import.lost.len()
    );
    ExitCode::from(2)
}

/// Writes `yaml` to `out` (created readable by its owner only: it may hold passwords), or to
/// stdout.
fn write_output(out: Option<&Path>, yaml: &str) -> std::io::Result<()> {
    let Some(path) = out else {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(yaml.as_bytes())?;
        return stdout.flush();
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(yaml.as_bytes())
}

#[cfg(test)]
mod tests;
