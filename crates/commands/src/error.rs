//! The crate's one error type: what the session learns when a command line's keys
//! cannot be found.

/// Why keys could not be extracted from a command line.
///
/// Redis itself finds no keys for such a line and answers with a command-specific error.
/// The exact reply is best obtained by forwarding the line to any primary (it has no keys,
/// so no slot applies). What redis-server 7.0.15 answers, for reference:
///
/// - EVAL/EVALSHA(_RO): `ERR Number of keys can't be greater than number of args`,
///   `ERR Number of keys can't be negative`, `ERR value is not an integer or out of range`
///   (e.g. `EVAL "return 1" 5 a` gives the first).
/// - ZUNIONSTORE/ZINTERSTORE/ZDIFFSTORE/ZUNION/ZINTER/ZDIFF/ZINTERCARD: `ERR value is not an
///   integer or out of range` (e.g. `ZUNIONSTORE d x a`), `ERR syntax error` (too large),
///   `ERR at least 1 input key is needed for 'zunionstore' command` (zero or negative).
/// - SINTERCARD/LMPOP/BLMPOP/ZMPOP/BZMPOP: `ERR numkeys should be greater than 0`
///   (SINTERCARD too large: `ERR Number of keys can't be greater than number of args`;
///   the *MPOP commands too large: `ERR syntax error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyError {
    /// The key count (numkeys) is not a canonical non-negative integer, is zero for a
    /// command that needs keys, or names more keys than there are arguments; or another
    /// key spec does not fit the arguments (`XREAD COUNT 1 STREAMS k` with no ID,
    /// `MIGRATE h p k 0 10 KEYS a`, too few arguments for the arity).
    InvalidNumKeys,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::InvalidNumKeys => f.write_str("invalid number of keys"),
        }
    }
}

impl std::error::Error for KeyError {}
