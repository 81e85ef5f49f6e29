//! The Envoy document as a tree of JSON values, each reached with its YAML path
//! (`static_resources.listeners[0].address`): parsing (with `${VAR}` placeholders), typed
//! access to values, and protobuf durations.
//!
//! Reading a message goes through [`Obj`]: every field the converter looks at is *taken*, and
//! [`Obj::finish`] lists the fields nobody took as not carried over, so a field this converter
//! does not know is never dropped in silence. Proto field names may be written in
//! `snake_case` or in proto-JSON `lowerCamelCase`; both are found.

use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::report::{ImportError, Report};

/// Marks a `${VAR}` placeholder while the text is parsed: `${X}` is not a YAML or JSON value
/// where a number is expected, and is not a plain scalar inside `{…}`.
const PLACEHOLDER_MARK: &str = "__slotgate_envoy_placeholder_";

/// Parses YAML or JSON text into a value tree; `${VAR}` placeholders come back as strings
/// (`port_value: ${PORT}` gives `"${PORT}"`).
///
/// # Errors
/// Text that is neither, with the parser's line and column.
pub fn parse(text: &str) -> Result<Value, ImportError> {
    let (marked, names) = mark_placeholders(text);
    let mut value: Value = serde_saphyr::from_str(&marked).map_err(|e| {
        let full = e.to_string();
        let first = full.lines().next().unwrap_or("").trim();
        ImportError {
            path: String::new(),
            message: format!(
                "not YAML or JSON: {}",
                first.strip_prefix("error: ").unwrap_or(first)
            ),
        }
    })?;
    restore_placeholders(&mut value, &names);
    Ok(value)
}

/// Replaces every `${NAME}` with a mark (quoted outside JSON strings, bare inside them and in
/// YAML), returning the names in order.
fn mark_placeholders(text: &str) -> (String, Vec<String>) {
    let json = text.trim_start().starts_with('{');
    let mut out = String::with_capacity(text.len());
    let mut names = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if let Some(name) = placeholder_at(rest) {
            let mark = format!("{PLACEHOLDER_MARK}{}__", names.len());
            if json && !in_string {
                out.push_str(&format!("\"{mark}\""));
            } else {
                out.push_str(&mark);
            }
            rest = &rest[name.len() + 3..];
            names.push(name.to_string());
            continue;
        }
        if json {
            (in_string, escaped) = match (c, in_string, escaped) {
                ('"', false, _) => (true, false),
                ('"', true, false) => (false, false),
                ('\\', true, false) => (true, true),
                (_, s, _) => (s, false),
            };
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    (out, names)
}

/// The NAME of a `${NAME}` at the start of `s` (letters, digits, `_`; not starting with a digit).
fn placeholder_at(s: &str) -> Option<&str> {
    let body = s.strip_prefix("${")?;
    let end = body.find('}')?;
    let name = &body[..end];
    let valid = name.chars().next().is_some_and(|c| !c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then_some(name)
}

fn restore_placeholders(value: &mut Value, names: &[String]) {
    match value {
        Value::String(s) => *s = restore_in(s, names),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| restore_placeholders(v, names)),
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (k, mut v) in old {
                restore_placeholders(&mut v, names);
                map.insert(restore_in(&k, names), v);
            }
        }
        _ => {}
    }
}

fn restore_in(s: &str, names: &[String]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(PLACEHOLDER_MARK) {
        out.push_str(&rest[..at]);
        let after = &rest[at + PLACEHOLDER_MARK.len()..];
        let digits = after.find("__").unwrap_or(0);
        match after[..digits]
            .parse::<usize>()
            .ok()
            .and_then(|i| names.get(i))
        {
            Some(name) => {
                out.push_str(&format!("${{{name}}}"));
                rest = &after[digits + 2..];
            }
            None => {
                out.push_str(PLACEHOLDER_MARK);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A value of the document and the YAML path that leads to it.
#[derive(Debug, Clone)]
pub struct Node<'a> {
    /// The value.
    pub value: &'a Value,
    /// Its YAML path (empty for the root).
    pub path: String,
}

// === impl Node ===

impl<'a> Node<'a> {
    /// The root of a document.
    pub fn root(value: &'a Value) -> Node<'a> {
        Node {
            value,
            path: String::new(),
        }
    }

    /// An error about this value.
    pub fn error(&self, message: impl Into<String>) -> ImportError {
        ImportError {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    fn wrong_type(&self, expected: &str) -> ImportError {
        let found = match self.value {
            Value::Null => "nothing",
            Value::Bool(_) => "true/false",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "a list",
            Value::Object(_) => "a mapping",
        };
        self.error(format!("expected {expected}, found {found}"))
    }

    /// This value as a message whose fields are taken one by one.
    pub fn obj(&self) -> Result<Obj<'a>, ImportError> {
        match self.value {
            Value::Object(map) => Ok(Obj {
                map,
                path: self.path.clone(),
                taken: Vec::new(),
            }),
            _ => Err(self.wrong_type("a mapping")),
        }
    }

    /// The items of a list, each with its path (`…[i]`). A mapping where a list is expected
    /// is read as a list of one, as Envoy's proto-JSON reader does.
    pub fn list(&self) -> Result<Vec<Node<'a>>, ImportError> {
        match self.value {
            Value::Object(_) => Ok(vec![self.clone()]),
            Value::Array(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, value)| Node {
                    value,
                    path: format!("{}[{i}]", self.path),
                })
                .collect()),
            _ => Err(self.wrong_type("a list")),
        }
    }

    /// A string value.
    pub fn str(&self) -> Result<&'a str, ImportError> {
        self.value
            .as_str()
            .ok_or_else(|| self.wrong_type("a string"))
    }

    /// A `true`/`false` value.
    pub fn bool(&self) -> Result<bool, ImportError> {
        self.value
            .as_bool()
            .ok_or_else(|| self.wrong_type("true or false"))
    }

    /// A non-negative integer: a number, or digits in a string as proto-JSON allows.
    pub fn uint(&self) -> Result<u64, ImportError> {
        match self.value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| self.wrong_type("a non-negative integer"))
    }

    /// A port number, or the text of a `${VAR}` placeholder standing for one.
    pub fn port(&self) -> Result<String, ImportError> {
        if let Value::String(s) = self.value {
            if s.contains("${") {
                return Ok(s.clone());
            }
        }
        match self.uint()? {
            p if p <= u64::from(u16::MAX) => Ok(p.to_string()),
            p => Err(self.error(format!("{p} is not a port number"))),
        }
    }

    /// A protobuf duration (`"1.5s"`; `"100ms"` is accepted too) as slotgate writes
    /// durations (`"1500ms"`), or the text of a `${VAR}` placeholder.
    pub fn duration(&self) -> Result<String, ImportError> {
        let text = self
            .str()
            .map_err(|_| self.wrong_type("a duration like \"1.5s\""))?;
        if text.contains("${") {
            return Ok(text.to_string());
        }
        let nanos = parse_duration_nanos(text.trim())
            .ok_or_else(|| self.error(format!("{text:?} is not a duration like \"1.5s\"")))?;
        Ok(format_duration(nanos))
    }
}

/// `"1.5s"` or `"250ms"` in nanoseconds; `None` for anything else (negative included).
fn parse_duration_nanos(text: &str) -> Option<u128> {
    let (number, unit_nanos) = match text.strip_suffix("ms") {
        Some(n) => (n, 1_000_000u128),
        None => (text.strip_suffix('s')?, 1_000_000_000u128),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return None;
    }
    if whole.len() > 12 || fraction.len() > 9 {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let scale = 10u128.pow(9 - fraction.len() as u32);
    let fraction: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().ok()?
    };
    Some(whole * unit_nanos + fraction * scale * unit_nanos / 1_000_000_000)
}

/// Nanoseconds as slotgate writes a duration: whole seconds as `"5s"`, else milliseconds.
fn format_duration(nanos: u128) -> String {
    const MS: u128 = 1_000_000;
    if nanos % (1000 * MS) == 0 {
        format!("{}s", nanos / (1000 * MS))
    } else if nanos % MS == 0 {
        format!("{}ms", nanos / MS)
    } else {
        let fraction = format!("{:06}", nanos % MS);
        format!("{}.{}ms", nanos / MS, fraction.trim_end_matches('0'))
    }
}

/// A message being read: the fields taken so far are remembered for [`Obj::finish`].
#[derive(Debug)]
pub struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
    taken: Vec<&'a str>,
}

// === impl Obj ===

impl<'a> Obj<'a> {
    /// A message with no fields (the value of a typed config that has none).
    pub fn empty(path: &str) -> Obj<'a> {
        static EMPTY: OnceLock<Map<String, Value>> = OnceLock::new();
        Obj {
            map: EMPTY.get_or_init(Map::new),
            path: path.to_string(),
            taken: Vec::new(),
        }
    }

    /// The message's YAML path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Takes a field by its proto name (`load_assignment`, also found as `loadAssignment`);
    /// `None` when absent or `null`.
    pub fn take(&mut self, field: &str) -> Option<Node<'a>> {
        let camel = camel_case(field);
        let (key, value) = self
            .map
            .get_key_value(field)
            .or_else(|| self.map.get_key_value(&camel))?;
        self.taken.push(key);
        (!value.is_null()).then(|| Node {
            value,
            path: child_path(&self.path, key),
        })
    }

    /// Takes a field that must be there.
    ///
    /// # Errors
    /// When it is absent.
    pub fn require(&mut self, field: &str) -> Result<Node<'a>, ImportError> {
        self.take(field).ok_or_else(|| ImportError {
            path: self.path.clone(),
            message: format!("missing field {field}"),
        })
    }

    /// Takes each field present and notes `why` for it.
    pub fn note_each(&mut self, report: &mut Report, fields: &[(&str, &str)]) {
        for (field, why) in fields {
            if let Some(node) = self.take(field) {
                report.note(&node.path, *why);
            }
        }
    }

    /// Takes each field present and lists it as not carried over with `why`.
    pub fn lose_each(&mut self, report: &mut Report, fields: &[(&str, &str)]) {
        for (field, why) in fields {
            if let Some(node) = self.take(field) {
                report.lost(&node.path, *why);
            }
        }
    }

    /// Notes every field nobody took as `why` (for parts of Envoy outside the Redis path).
    pub fn note_rest(self, report: &mut Report, why: &str) {
        for (key, value) in self.map {
            if !self.taken.contains(&key.as_str()) && !value.is_null() {
                report.note(&child_path(&self.path, key), why);
            }
        }
    }

    /// Lists every field nobody took as not carried over.
    pub fn finish(self, report: &mut Report) {
        for (key, value) in self.map {
            if !self.taken.contains(&key.as_str()) && !value.is_null() {
                report.lost(
                    &child_path(&self.path, key),
                    "not converted: slotgate has no equivalent",
                );
            }
        }
    }
}

/// The items of a list value, or the value itself when it is a mapping (see [`Node::list`]);
/// nothing for other values.
pub fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        Value::Object(_) => std::slice::from_ref(value),
        _ => &[],
    }
}

/// `parent.key`, or `parent["key"]` when the key is not a plain word.
pub fn child_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match (plain, parent.is_empty()) {
        (true, true) => key.to_string(),
        (true, false) => format!("{parent}.{key}"),
        (false, _) => format!("{parent}[{}]", serde_json::Value::from(key)),
    }
}

/// `load_assignment` → `loadAssignment`.
fn camel_case(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        match (c, upper) {
            ('_', _) => upper = true,
            (c, true) => {
                out.push(c.to_ascii_uppercase());
                upper = false;
            }
            (c, false) => out.push(c),
        }
    }
    out
}
