//! What a conversion has to say: the [`ImportError`] that stops it (exit status 1), and the
//! [`Report`] of fields not carried over (exit status 2) or worth a note.

use std::fmt;

/// Why a document cannot be converted at all (exit status 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// YAML path of the offending value; empty for the document as a whole.
    pub path: String,
    /// What is wrong, lowercase, no trailing period.
    pub message: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ImportError {}

/// One remark about a field: its YAML path and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// YAML path in the Envoy document.
    pub path: String,
    /// What slotgate does instead, or why nothing.
    pub message: String,
}

/// What the conversion could not carry over (exit status 2) and what it notes for the reader.
#[derive(Debug, Default)]
pub struct Report {
    /// Fields whose behaviour slotgate does not reproduce.
    pub lost: Vec<Finding>,
    /// Fields converted, or dropped without a change in behaviour, worth a comment.
    pub notes: Vec<Finding>,
}

// === impl Report ===

impl Report {
    /// Records a field whose behaviour is not carried over.
    pub fn lost(&mut self, path: &str, message: impl Into<String>) {
        self.lost.push(Finding {
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// Records a remark that does not change behaviour.
    pub fn note(&mut self, path: &str, message: impl Into<String>) {
        self.notes.push(Finding {
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// Lists `value` as not carried over when it holds a `${VAR}` placeholder in a key where
    /// slotgate does not expand them (see docs/configuration.md).
    pub fn literal_only(&mut self, path: &str, value: &str, key: &str) {
        if value.contains("${") {
            self.lost(
                path,
                format!(
                    "slotgate does not expand environment placeholders in {key}: substitute \
                        it before slotgate reads the file (e.g. envsubst, as for Envoy)"
                ),
            );
        }
    }
}
