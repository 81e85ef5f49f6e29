//! Envoy's shared message types as slotgate reads them: `config.core.v3` `Address` and
//! `DataSource`, and the `typed_config` wrapper every extension's settings come in.

use super::report::{ImportError, Report};
use super::tree::{child_path, Node, Obj};

/// The message inside a `typed_config` and its type URL (`@type`). A `TypedStruct` or a
/// `google.protobuf.Struct` is unwrapped to its `value`, with the type URL it names.
///
/// # Errors
/// Not a mapping, or a wrong type inside the wrapper.
pub fn typed_config<'a>(
    node: &Node<'a>,
    report: &mut Report,
) -> Result<(String, Obj<'a>), ImportError> {
    let mut obj = node.obj()?;
    let mut type_url = match obj.take("@type") {
        Some(t) => t.str()?.to_string(),
        None => String::new(),
    };
    let wrapped = type_url.ends_with("TypedStruct");
    if !wrapped && !type_url.ends_with("google.protobuf.Struct") {
        return Ok((type_url, obj));
    }
    if wrapped {
        type_url = match obj.take("type_url") {
            Some(t) => t.str()?.to_string(),
            None => String::new(),
        };
    }
    let value = match obj.take("value") {
        Some(v) => v.obj()?,
        None => Obj::empty(&child_path(obj.path(), "value")),
    };
    obj.finish(report);
    Ok((type_url, value))
}

/// An Envoy `Address` as `host:port` (`[v6]:port`); the port may be a `${VAR}` placeholder.
/// A Unix socket or an internal address is reported and gives `None`.
///
/// # Errors
/// Wrong types, or a socket address without `address` or `port_value`.
pub fn address(node: &Node<'_>, report: &mut Report) -> Result<Option<String>, ImportError> {
    let mut obj = node.obj()?;
    let Some(socket) = obj.take("socket_address") else {
        obj.finish(report);
        report.lost(
            &node.path,
            "not a TCP address: slotgate listens and connects over TCP",
        );
        return Ok(None);
    };
    obj.finish(report);
    let mut sock = socket.obj()?;
    let host = sock.require("address")?.str()?.to_string();
    let port = sock.require("port_value")?.port()?;
    if let Some(p) = sock.take("protocol") {
        if p.str()? != "TCP" {
            return Err(p.error("slotgate speaks TCP only"));
        }
    }
    sock.note_each(
        report,
        &[("ipv4_compat", "slotgate binds the address as written")],
    );
    sock.finish(report);
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    Ok(Some(format!("{host}:{port}")))
}

/// Where an Envoy `DataSource` takes its bytes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `filename`: a path.
    File(String),
    /// `inline_string`, or `inline_bytes` that decode to UTF-8.
    Inline(String),
    /// `inline_bytes` that are not base64 of UTF-8 text.
    Binary,
    /// `environment_variable`: the variable's name.
    Env(String),
}

/// Reads a `DataSource` message (`filename`, `inline_string`, `inline_bytes` or
/// `environment_variable`).
///
/// # Errors
/// Not a mapping, or none of the four (or a wrong type in it).
pub fn data_source(node: &Node<'_>, report: &mut Report) -> Result<Source, ImportError> {
    let mut obj = node.obj()?;
    let source = if let Some(f) = obj.take("filename") {
        Source::File(f.str()?.to_string())
    } else if let Some(s) = obj.take("inline_string") {
        Source::Inline(s.str()?.to_string())
    } else if let Some(b) = obj.take("inline_bytes") {
        decode_base64(b.str()?)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .map_or(Source::Binary, Source::Inline)
    } else if let Some(e) = obj.take("environment_variable") {
        Source::Env(e.str()?.to_string())
    } else {
        return Err(node
            .error("expected one of filename, inline_string, inline_bytes, environment_variable"));
    };
    obj.finish(report);
    Ok(source)
}

/// Standard or URL-safe base64, padding optional; `None` when it is not base64.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let sextet = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim().trim_end_matches('=').bytes() {
        acc = (acc << 6) | u32::from(sextet(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}
