//! Envoy's TLS transport sockets: a listener's `DownstreamTlsContext` becomes `tls:`, a
//! cluster's `UpstreamTlsContext` becomes `upstream.tls:`. slotgate reads certificates, keys
//! and CAs from files and verifies with the CA alone (plus the node's name upstream), so
//! inline PEM, SDS secrets and certificate pinning are listed as not carried over.

use super::core_v3::{data_source, typed_config, Source};
use super::output::{ListenerTls, UpstreamTls};
use super::report::{ImportError, Report};
use super::tree::{Node, Obj};

/// What stands in for a certificate or key slotgate cannot read from a file: an obviously
/// wrong path, so `check-config` fails on it until it is edited.
const MISSING_FILE: &str = "EDIT-ME: write this PEM to a file and put its path here";

/// The parts of a `CommonTlsContext` slotgate has keys for.
#[derive(Debug, Default)]
struct CommonTls {
    cert: Option<String>,
    key: Option<String>,
    trusted_ca: Option<String>,
    /// The one exact subject-alternative name the peer's certificate must carry.
    san: Option<String>,
    /// Whether a `validation_context` was given at all.
    validates: bool,
    /// Whether `tls_certificates` had one.
    has_certificate: bool,
}

/// What a `transport_socket` is.
enum Socket<'a> {
    /// Plaintext (`raw_buffer`).
    Plain,
    /// TLS, with the context's fields.
    Tls(Obj<'a>),
    /// Anything else (already reported).
    Other,
}

fn socket<'a>(node: &Node<'a>, report: &mut Report) -> Result<Socket<'a>, ImportError> {
    let mut obj = node.obj()?;
    let name = match obj.take("name") {
        Some(n) => n.str()?.to_string(),
        None => String::new(),
    };
    let Some(config) = obj.take("typed_config") else {
        obj.finish(report);
        if name.ends_with("raw_buffer") {
            return Ok(Socket::Plain);
        }
        report.lost(
            &node.path,
            "transport socket without typed_config: not converted",
        );
        return Ok(Socket::Other);
    };
    obj.finish(report);
    let (type_url, context) = typed_config(&config, report)?;
    if type_url.ends_with("RawBuffer") || name.ends_with("raw_buffer") {
        return Ok(Socket::Plain);
    }
    if type_url.ends_with("TlsContext") {
        return Ok(Socket::Tls(context));
    }
    report.lost(
        &node.path,
        format!("transport socket {name:?} ({type_url}): slotgate speaks plaintext or TLS only"),
    );
    Ok(Socket::Other)
}

/// A listener's `transport_socket` → `tls:` (`None`: plaintext).
///
/// # Errors
/// Wrong types in the context.
pub fn listener_tls(
    node: &Node<'_>,
    report: &mut Report,
) -> Result<Option<ListenerTls>, ImportError> {
    let Socket::Tls(mut ctx) = socket(node, report)? else {
        return Ok(None);
    };
    let common = match ctx.take("common_tls_context") {
        Some(c) => common_tls(&c, report)?,
        None => CommonTls::default(),
    };
    let require = match ctx.take("require_client_certificate") {
        Some(r) => r.bool()?,
        None => false,
    };
    let client_ca = match (require, common.trusted_ca) {
        (true, Some(ca)) => Some(ca),
        (true, None) => {
            report.lost(
                ctx.path(),
                "require_client_certificate without a trusted_ca: slotgate \
                    needs tls.client_ca to check client certificates",
            );
            None
        }
        (false, Some(_)) => {
            report.lost(
                ctx.path(),
                "client certificates were optional (validated only when \
                    presented): slotgate either requires them (tls.client_ca) or \
                    asks for none; none asked",
            );
            None
        }
        (false, None) => None,
    };
    if common.san.is_some() {
        report.lost(
            ctx.path(),
            "client certificates were matched by subject alternative \
                name: slotgate checks the CA only",
        );
    }
    if !common.has_certificate {
        report.lost(
            ctx.path(),
            "no tls_certificates: set tls.cert and tls.key by hand",
        );
    }
    ctx.finish(report);
    Ok(Some(ListenerTls {
        cert: common.cert.unwrap_or_else(|| MISSING_FILE.into()),
        key: common.key.unwrap_or_else(|| MISSING_FILE.into()),
        client_ca,
        handshake_timeout: None,
    }))
}

/// A cluster's `transport_socket` → `upstream.tls:` (`None`: plaintext).
///
/// # Errors
/// Wrong types in the context.
pub fn upstream_tls(
    node: &Node<'_>,
    report: &mut Report,
) -> Result<Option<UpstreamTls>, ImportError> {
    let Socket::Tls(mut ctx) = socket(node, report)? else {
        return Ok(None);
    };
    let common = match ctx.take("common_tls_context") {
        Some(c) => common_tls(&c, report)?,
        None => CommonTls::default(),
    };
    let sni = match ctx.take("sni") {
        Some(s) => Some(s.str()?.to_string()),
        None => None,
    };
    if !common.validates {
        report.lost(
            ctx.path(),
            "Envoy did not verify the nodes' certificates (no \
                validation_context): slotgate always does, against the \
                system CAs unless upstream.tls.ca is set",
        );
    }
    let server_name = match (common.san, sni) {
        (Some(san), Some(sni)) if san != sni => {
            report.lost(
                ctx.path(),
                format!(
                    "sni {sni:?} differs from the name verified ({san:?}): \
                        slotgate sends and verifies one name, \
                        upstream.tls.server_name ({san:?})"
                ),
            );
            Some(san)
        }
        (Some(name), _) => Some(name),
        (None, Some(sni)) => {
            report.note(
                ctx.path(),
                "Envoy sent this SNI but checked only the CA; slotgate also \
                    checks that each node's certificate carries \
                    upstream.tls.server_name",
            );
            Some(sni)
        }
        (None, None) => {
            report.note(
                ctx.path(),
                "slotgate checks that each node's certificate names the host \
                    the cluster reports for it (an IP address needs an IP SAN); \
                    Envoy checked only the CA",
            );
            None
        }
    };
    ctx.note_each(
        report,
        &[
            (
                "allow_renegotiation",
                "slotgate (rustls) never renegotiates",
            ),
            ("max_session_keys", "slotgate keeps rustls's session cache"),
        ],
    );
    ctx.finish(report);
    Ok(Some(UpstreamTls {
        ca: common.trusted_ca,
        server_name,
        cert: common.cert,
        key: common.key,
    }))
}

fn common_tls(node: &Node<'_>, report: &mut Report) -> Result<CommonTls, ImportError> {
    let mut obj = node.obj()?;
    let mut common = CommonTls::default();
    if let Some(certs) = obj.take("tls_certificates") {
        for (i, cert) in certs.list()?.iter().enumerate() {
            if i > 0 {
                report.lost(
                    &cert.path,
                    "several certificates (chosen by SNI or key type): slotgate serves one",
                );
                continue;
            }
            common.has_certificate = true;
            (common.cert, common.key) = certificate(cert, report)?;
        }
    }
    if let Some(v) = obj.take("validation_context") {
        common.validates = true;
        (common.trusted_ca, common.san) = validation(&v, report)?;
    }
    if let Some(p) = obj.take("tls_params") {
        tls_params(&p, report)?;
    }
    obj.lose_each(
        report,
        &[
            (
                "tls_certificate_sds_secret_configs",
                "certificates from SDS: slotgate reads tls.cert and tls.key \
                    from files (SIGHUP reloads them)",
            ),
            (
                "validation_context_sds_secret_config",
                "a CA from SDS: slotgate reads the CA from a file",
            ),
            (
                "combined_validation_context",
                "a CA from SDS: slotgate reads the CA from a file",
            ),
        ],
    );
    obj.finish(report);
    Ok(common)
}

/// `TlsCertificate` → (certificate file, key file).
fn certificate(
    node: &Node<'_>,
    report: &mut Report,
) -> Result<(Option<String>, Option<String>), ImportError> {
    let mut obj = node.obj()?;
    let cert = match obj.take("certificate_chain") {
        Some(c) => file_of(&c, "the certificate chain", report)?,
        None => None,
    };
    let key = match obj.take("private_key") {
        Some(k) => file_of(&k, "the private key", report)?,
        None => None,
    };
    obj.note_each(
        report,
        &[(
            "watched_directory",
            "slotgate reloads certificates on SIGHUP instead of watching a directory",
        )],
    );
    obj.finish(report);
    Ok((cert, key))
}

/// `CertificateValidationContext` → (CA file, the one exact SAN required).
fn validation(
    node: &Node<'_>,
    report: &mut Report,
) -> Result<(Option<String>, Option<String>), ImportError> {
    let mut obj = node.obj()?;
    let ca = match obj.take("trusted_ca") {
        Some(c) => file_of(&c, "the trusted CA", report)?,
        None => None,
    };
    let mut san = None;
    for field in ["match_typed_subject_alt_names", "match_subject_alt_names"] {
        if let Some(m) = obj.take(field) {
            san = exact_san(&m, report)?;
        }
    }
    obj.note_each(
        report,
        &[(
            "watched_directory",
            "slotgate reloads files on SIGHUP instead of watching a directory",
        )],
    );
    obj.finish(report);
    Ok((ca, san))
}

/// A SAN matcher list holding exactly one `exact` name; anything else is reported.
fn exact_san(node: &Node<'_>, report: &mut Report) -> Result<Option<String>, ImportError> {
    let items = node.list()?;
    let [item] = items.as_slice() else {
        report.lost(
            &node.path,
            "several subject alternative names: slotgate verifies one name",
        );
        return Ok(None);
    };
    let mut obj = item.obj()?;
    // Typed matchers nest the string matcher under `matcher`, next to `san_type`.
    let mut matcher = match obj.take("matcher") {
        Some(m) => m.obj()?,
        None => item.obj()?,
    };
    obj.take("san_type");
    let exact = match matcher.take("exact") {
        Some(e) => Some(e.str()?.to_string()),
        None => None,
    };
    if exact.is_none() {
        report.lost(
            &item.path,
            "a subject alternative name matched by pattern: slotgate verifies one exact name",
        );
        return Ok(None);
    }
    Ok(exact)
}

fn tls_params(node: &Node<'_>, report: &mut Report) -> Result<(), ImportError> {
    let mut obj = node.obj()?;
    if let Some(min) = obj.take("tls_minimum_protocol_version") {
        match min.str()? {
            "TLS_AUTO" | "TLSv1_2" => {}
            "TLSv1_3" => report.lost(&min.path, "TLS 1.3 only: slotgate also accepts TLS 1.2"),
            _ => report.lost(
                &min.path,
                "slotgate speaks TLS 1.2 and 1.3 only: older clients cannot connect",
            ),
        }
    }
    if let Some(max) = obj.take("tls_maximum_protocol_version") {
        if !matches!(max.str()?, "TLS_AUTO" | "TLSv1_3") {
            report.lost(&max.path, "slotgate also speaks TLS 1.3");
        }
    }
    obj.finish(report);
    Ok(())
}

/// The path of a `DataSource` that is a file; other sources are reported (slotgate reads
/// certificates from files) and give `None`.
fn file_of(
    node: &Node<'_>,
    what: &str,
    report: &mut Report,
) -> Result<Option<String>, ImportError> {
    match data_source(node, report)? {
        Source::File(path) => Ok(Some(path)),
        Source::Env(var) => {
            report.lost(
                &node.path,
                format!(
                    "{what} comes from environment variable {var}: slotgate reads \
                        it from a file; write it to one and set its path"
                ),
            );
            Ok(None)
        }
        Source::Inline(_) | Source::Binary => {
            report.lost(
                &node.path,
                format!(
                    "{what} is inline: slotgate reads it from a file; write it to \
                        one and set its path"
                ),
            );
            Ok(None)
        }
    }
}
