//! The slotgate configuration the converter builds, and its YAML text: the keys of
//! docs/configuration.md, with what did not carry over and the notes as comments on top.

use std::fmt::Write as _;

use super::core_v3::Source;
use super::report::{Finding, Report};

/// The ACL rules of every converted user: Envoy had no per-command or per-key permissions.
pub const ALL_RULES: &str = "+@all ~* &*";

/// A converted configuration.
#[derive(Debug, Default)]
pub struct Converted {
    /// `listen`.
    pub listen: String,
    /// `tls:` of the client listener.
    pub tls: Option<ListenerTls>,
    /// `admin.listen`.
    pub admin_listen: Option<String>,
    /// `upstream:`.
    pub upstream: Upstream,
    /// `users:`.
    pub users: Vec<User>,
    /// Comment lines above `users:` explaining how Envoy's passwords were mapped.
    pub users_comment: Vec<String>,
}

/// `tls:` (client side).
#[derive(Debug, Default)]
pub struct ListenerTls {
    /// `tls.cert`.
    pub cert: String,
    /// `tls.key`.
    pub key: String,
    /// `tls.client_ca`.
    pub client_ca: Option<String>,
    /// `tls.handshake_timeout`.
    pub handshake_timeout: Option<String>,
}

/// `upstream:`.
#[derive(Debug, Default)]
pub struct Upstream {
    /// `upstream.mode` when not the default (`cluster`).
    pub mode: Option<&'static str>,
    /// `upstream.seeds`.
    pub seeds: Vec<String>,
    /// `upstream.username`.
    pub username: Option<String>,
    /// `upstream.password` or `upstream.password_file`.
    pub password: Option<Secret>,
    /// `upstream.tls`.
    pub tls: Option<UpstreamTls>,
    /// `upstream.refresh_interval`.
    pub refresh_interval: Option<String>,
    /// `upstream.connect_timeout`.
    pub connect_timeout: Option<String>,
    /// `upstream.op_timeout`.
    pub op_timeout: Option<String>,
    /// `upstream.read_from` when not the default (`primary`).
    pub read_from: Option<&'static str>,
}

/// `upstream.tls`.
#[derive(Debug, Default)]
pub struct UpstreamTls {
    /// `upstream.tls.ca`.
    pub ca: Option<String>,
    /// `upstream.tls.server_name`.
    pub server_name: Option<String>,
    /// `upstream.tls.cert`.
    pub cert: Option<String>,
    /// `upstream.tls.key`.
    pub key: Option<String>,
}

/// A password as slotgate reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// `password:` (clear text, or `${VAR}` expanded when slotgate loads the file).
    Password(String),
    /// `password_file:`.
    File(String),
}

// === impl Secret ===

impl Secret {
    /// The password an Envoy `DataSource` at `path` gives: clear text as `password`, an
    /// environment variable as `password: "${VAR}"`, a file as `password_file`. `None` for an
    /// empty password (Envoy ignores those) and for bytes that are not text (reported).
    pub fn from_source(source: Source, path: &str, report: &mut Report) -> Option<Secret> {
        match source {
            Source::File(file) => Some(Secret::File(file)),
            Source::Inline(text) if text.is_empty() => None,
            Source::Inline(text) => Some(Secret::Password(text)),
            Source::Env(var) => Some(Secret::Password(format!("${{{var}}}"))),
            Source::Binary => {
                report.lost(
                    path,
                    "a password that is not UTF-8 text: slotgate's passwords are text",
                );
                None
            }
        }
    }
}

/// One entry of `users:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// `name`.
    pub name: String,
    /// Its password.
    pub secret: Secret,
}

/// The configuration as YAML, with a header naming `source` and listing the report.
pub fn to_yaml(c: &Converted, source: &str, report: &Report) -> String {
    let mut s = String::new();
    write_header(&mut s, source, report);
    let _ = writeln!(s, "listen: {}", quote(&c.listen));
    if let Some(tls) = &c.tls {
        write_listener_tls(&mut s, tls);
    }
    if let Some(admin) = &c.admin_listen {
        let _ = writeln!(s, "admin:\n  listen: {}", quote(admin));
    }
    write_upstream(&mut s, &c.upstream);
    if !c.users.is_empty() {
        for line in &c.users_comment {
            let _ = writeln!(s, "# {}", one_line(line));
        }
        let _ = writeln!(s, "users:");
        for u in &c.users {
            let _ = writeln!(s, "  - name: {}", quote(&u.name));
            write_secret(&mut s, "    ", &u.secret);
            let _ = writeln!(s, "    rules: {}", quote(ALL_RULES));
        }
    }
    s
}

fn write_header(s: &mut String, source: &str, report: &Report) {
    let _ = writeln!(
        s,
        "# slotgate configuration converted by `slotgate import-envoy` from {}.",
        one_line(source)
    );
    let _ = writeln!(
        s,
        "# See docs/migrating-from-envoy.md for what changes for clients."
    );
    write_findings(s, "Not carried over (review before use):", &report.lost);
    write_findings(s, "Notes:", &report.notes);
}

fn write_findings(s: &mut String, title: &str, findings: &[Finding]) {
    if findings.is_empty() {
        return;
    }
    let _ = writeln!(s, "#\n# {title}");
    for f in findings {
        let _ = writeln!(s, "#   {}: {}", one_line(&f.path), one_line(&f.message));
    }
}

fn write_listener_tls(s: &mut String, tls: &ListenerTls) {
    let _ = writeln!(s, "tls:");
    let _ = writeln!(s, "  cert: {}", quote(&tls.cert));
    let _ = writeln!(s, "  key: {}", quote(&tls.key));
    if let Some(ca) = &tls.client_ca {
        let _ = writeln!(s, "  client_ca: {}", quote(ca));
    }
    if let Some(t) = &tls.handshake_timeout {
        let _ = writeln!(s, "  handshake_timeout: {}", quote(t));
    }
}

fn write_upstream(s: &mut String, u: &Upstream) {
    let _ = writeln!(s, "upstream:");
    if let Some(mode) = u.mode {
        let _ = writeln!(s, "  mode: {mode}");
    }
    let seeds: Vec<String> = u.seeds.iter().map(|x| quote(x)).collect();
    let _ = writeln!(s, "  seeds: [{}]", seeds.join(", "));
    if let Some(user) = &u.username {
        let _ = writeln!(s, "  username: {}", quote(user));
    }
    if let Some(secret) = &u.password {
        write_secret(s, "  ", secret);
    }
    if let Some(tls) = &u.tls {
        let _ = writeln!(s, "  tls:");
        let fields = [
            ("ca", &tls.ca),
            ("server_name", &tls.server_name),
            ("cert", &tls.cert),
            ("key", &tls.key),
        ];
        let mut any = false;
        for (key, value) in fields {
            if let Some(v) = value {
                let _ = writeln!(s, "    {key}: {}", quote(v));
                any = true;
            }
        }
        if !any {
            // `tls:` with nothing under it would be null; `{}` turns TLS on with defaults.
            s.truncate(s.len() - "\n".len());
            s.push_str(" {}\n");
        }
    }
    let durations = [
        ("refresh_interval", &u.refresh_interval),
        ("connect_timeout", &u.connect_timeout),
        ("op_timeout", &u.op_timeout),
    ];
    for (key, value) in durations {
        if let Some(v) = value {
            let _ = writeln!(s, "  {key}: {}", quote(v));
        }
    }
    if let Some(read_from) = u.read_from {
        let _ = writeln!(s, "  read_from: {read_from}");
    }
}

fn write_secret(s: &mut String, indent: &str, secret: &Secret) {
    let _ = match secret {
        Secret::Password(p) => writeln!(s, "{indent}password: {}", quote(p)),
        Secret::File(f) => writeln!(s, "{indent}password_file: {}", quote(f)),
    };
}

/// A YAML double-quoted scalar (JSON's string syntax is a subset of it).
fn quote(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// Text safe inside a `#` comment line.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}
