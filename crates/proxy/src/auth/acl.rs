//! Downstream ACLs: the rules of one configured user (`users[].rules`, docs/configuration.md) and the
//! check the session makes before a command goes anywhere.
//!
//! In the path of a command this sits between lookup and dispatch: once the client is
//! authenticated as a configured user, the session calls [`AclRules::check`] on every
//! command line (after the arity check, before routing, for local commands too) and answers
//! [`Denied::reply`] instead of running a refused one. Split commands (MGET, MSET, DEL) are
//! checked once, as the whole line the client sent.
//!
//! The rules are the Redis 7.0 `ACL SETUSER` syntax for one root selector, applied left to
//! right exactly as Redis applies them, and the check is Redis 7.0's `ACLSelectorCheckCmd`:
//! the command (or subcommand) bit, then every key with the read/write access its key spec
//! demands, then Pub/Sub channels. `tests/acl_dryrun.rs` compares both with a real
//! redis-server's `ACL DRYRUN`.
//!
//! Pure: no I/O, no locks. [`AclRules::check`] does not allocate.

mod keys;
mod rules;
#[cfg(test)]
mod tests;

use std::fmt;

use bytes::Bytes;
use slotgate_commands::{flag, key_flag, ArgSource, Category, Command, COMMAND_COUNT};

use crate::replies;

pub use crate::glob::glob_match;
pub use rules::{RuleError, RuleErrorKind};

/// `u64` words in a command bitmap: one bit per [`Command::index`].
const WORDS: usize = COMMAND_COUNT.div_ceil(64);

/// What one user may do: enabled or not, which commands, which keys with which access, which
/// Pub/Sub channels. Built by [`AclRules::parse`]; cheap to check, immutable while in use.
///
/// A new value is enabled (`on`) and allows nothing (no commands, keys or channels), like a
/// user that Redis creates with `ACL SETUSER name on`.
#[derive(Clone, PartialEq, Eq)]
pub struct AclRules {
    enabled: bool,
    /// Bit `index` set: the command or subcommand with that [`Command::index`] may run.
    commands: [u64; WORDS],
    /// The category rules in order (`None`: `@all`), for commands learned from the servers,
    /// which have no bit: as in Redis, the last rule whose category holds the command
    /// decides.
    category_rules: Vec<(Option<Category>, bool)>,
    /// `allkeys` / `~*`: every key, any access (then `key_patterns` is empty).
    all_keys: bool,
    key_patterns: Vec<KeyPattern>,
    /// `allchannels` / `&*` (then `channel_patterns` is empty).
    all_channels: bool,
    channel_patterns: Vec<Box<[u8]>>,
}

/// One `~pattern`, `%R~pattern`, `%W~pattern` or `%RW~pattern`.
#[derive(Clone, PartialEq, Eq)]
struct KeyPattern {
    pattern: Box<[u8]>,
    perm: KeyPerm,
}

/// Access to a key: read, write, both, or neither (a key spec that is neither `access`,
/// `insert`, `delete` nor `update`, such as EXISTS's, needs only a matching pattern).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct KeyPerm(u8);

/// Why [`AclRules::check`] refused a command line. [`Denied::reply`] is what Redis 7.0 answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The user may not run this command or subcommand.
    Command {
        /// As Redis names it in the reply: `"get"`, `"config|get"`.
        name: &'static str,
    },
    /// No key pattern grants the access this key argument needs.
    Key {
        /// Index of the refused key in the command line (the name is 0).
        index: usize,
    },
    /// No channel pattern allows this channel (or, for PSUBSCRIBE, this pattern).
    Channel {
        /// Index of the refused channel in the command line (the name is 0).
        index: usize,
    },
}

/// The NOPERM text for a refused key, without the leading `-` (Redis 7.0).
pub const NOPERM_KEY: &str = replies::NOPERM_KEY_TEXT;
/// The NOPERM text for a refused channel, without the leading `-` (Redis 7.0).
pub const NOPERM_CHANNEL: &str = replies::NOPERM_CHANNEL_TEXT;

// === impl AclRules ===

impl AclRules {
    /// An enabled user that may do nothing.
    pub const fn new() -> Self {
        AclRules {
            enabled: true,
            commands: [0; WORDS],
            category_rules: Vec::new(),
            all_keys: false,
            key_patterns: Vec::new(),
            all_channels: false,
            channel_patterns: Vec::new(),
        }
    }

    /// Parses a space-separated rule string such as `"+@all -@dangerous ~app:* &*"`, applying
    /// the rules left to right to [`AclRules::new`] (see [`AclRules::apply`]).
    ///
    /// # Errors
    /// The first rule that Redis would refuse, or that slotgate does not support (passwords,
    /// selectors, first-arg rules); the message names the rule like Redis does:
    /// `Error in ACL SETUSER modifier 'foo': Syntax error`.
    pub fn parse(rules: &str) -> Result<Self, RuleError> {
        let mut acl = AclRules::new();
        for rule in rules.split_ascii_whitespace() {
            acl.apply(rule)?;
        }
        Ok(acl)
    }

    /// Whether the user may authenticate (`on`, the default, or `off`). [`AclRules::check`]
    /// does not look at it: like Redis, `off` only stops new authentications.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether the user holds the `allkeys` permission.
    pub fn allows_all_keys(&self) -> bool {
        self.all_keys
    }

    /// Whether the user holds the `allchannels` permission.
    pub fn allows_all_channels(&self) -> bool {
        self.all_channels
    }

    /// Checks a whole command line as Redis 7.0 does before running it: the command, then
    /// each key against the key patterns with the access its key spec needs, then the Pub/Sub
    /// channels of PUBLISH, SPUBLISH, SUBSCRIBE, SSUBSCRIBE and PSUBSCRIBE (PSUBSCRIBE patterns
    /// must equal a channel pattern). The first refusal wins.
    ///
    /// `cmd` is what [`slotgate_commands::lookup`] returned for `args` (name at index 0);
    /// given a container with a known subcommand in `args[1]`, the subcommand is checked.
    /// The arity should have been checked already, as Redis does; a short line is not an
    /// error here. Never allocates.
    ///
    /// # Errors
    /// [`Denied`] saying what was refused.
    pub fn check<A: ArgSource + ?Sized>(&self, cmd: &Command, args: &A) -> Result<(), Denied> {
        let cmd = resolve_subcommand(cmd, args);
        if !self.allows_command(cmd) {
            return Err(Denied::Command { name: cmd.name });
        }
        if !self.all_keys && !cmd.key_specs.is_empty() {
            let denied = keys::first_denied_key(cmd, args, |key, perm| self.check_key(key, perm));
            if let Some(index) = denied {
                return Err(Denied::Key { index });
            }
        }
        if !self.all_channels && cmd.has_flag(flag::PUBSUB) {
            let (range, literal) = match cmd.name {
                "publish" | "spublish" => (1..args.argc().min(2), false),
                "subscribe" | "ssubscribe" => (1..args.argc(), false),
                "psubscribe" => (1..args.argc(), true),
                _ => (0..0, false),
            };
            for index in range {
                if !self.check_channel(args.arg(index), literal) {
                    return Err(Denied::Channel { index });
                }
            }
        }
        Ok(())
    }

    /// Whether the user may run `cmd` (a subcommand entry for `CONFIG GET` and the like),
    /// keys and channels aside. AUTH and HELLO (`no_auth` commands) are always allowed.
    #[inline]
    pub fn allows_command(&self, cmd: &Command) -> bool {
        if usize::from(cmd.index) >= COMMAND_COUNT {
            return self.allows_learned(cmd);
        }
        cmd.has_flag(flag::NO_AUTH) || self.command_bit(cmd.index)
    }

    /// A command learned from the servers: the last category rule that covers it.
    fn allows_learned(&self, cmd: &Command) -> bool {
        self.category_rules
            .iter()
            .rev()
            .find(|(category, _)| category.is_none_or(|c| cmd.in_category(c)))
            .is_some_and(|(_, allow)| *allow)
    }

    /// Whether some key pattern matches `key` and grants at least `perm`.
    pub fn check_key(&self, key: &[u8], perm: KeyPerm) -> bool {
        self.all_keys
            || self
                .key_patterns
                .iter()
                .any(|p| p.perm.contains(perm) && glob_match(&p.pattern, key))
    }

    /// Whether the user may use `channel`: some channel pattern glob-matches it or, with
    /// `literal` (a PSUBSCRIBE pattern), equals it byte for byte.
    pub fn check_channel(&self, channel: &[u8], literal: bool) -> bool {
        self.all_channels
            || self.channel_patterns.iter().any(|p| {
                if literal {
                    **p == *channel
                } else {
                    glob_match(p, channel)
                }
            })
    }

    #[inline]
    fn command_bit(&self, index: u16) -> bool {
        let i = index as usize;
        i < COMMAND_COUNT && self.commands[i / 64] & (1 << (i % 64)) != 0
    }

    fn set_command_bit(&mut self, index: u16, allow: bool) {
        let i = index as usize;
        if i < COMMAND_COUNT {
            if allow {
                self.commands[i / 64] |= 1 << (i % 64);
            } else {
                self.commands[i / 64] &= !(1 << (i % 64));
            }
        }
    }
}

impl Default for AclRules {
    fn default() -> Self {
        AclRules::new()
    }
}

impl std::str::FromStr for AclRules {
    type Err = RuleError;

    fn from_str(rules: &str) -> Result<Self, RuleError> {
        AclRules::parse(rules)
    }
}

impl fmt::Debug for AclRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let allowed: u32 = self.commands.iter().map(|w| w.count_ones()).sum();
        let keys: Vec<String> = self
            .key_patterns
            .iter()
            .map(|p| {
                format!(
                    "{}{}",
                    p.perm.rule_prefix(),
                    String::from_utf8_lossy(&p.pattern)
                )
            })
            .collect();
        let channels: Vec<_> = self
            .channel_patterns
            .iter()
            .map(|p| String::from_utf8_lossy(p))
            .collect();
        f.debug_struct("AclRules")
            .field("enabled", &self.enabled)
            .field("commands_allowed", &allowed)
            .field("all_keys", &self.all_keys)
            .field("key_patterns", &keys)
            .field("all_channels", &self.all_channels)
            .field("channel_patterns", &channels)
            .finish()
    }
}

/// The subcommand entry when `cmd` is a container and `args[1]` names one of its subcommands.
fn resolve_subcommand<'c, A: ArgSource + ?Sized>(cmd: &'c Command, args: &A) -> &'c Command {
    if cmd.is_container() && args.argc() > 1 {
        if let Some(sub) = slotgate_commands::lookup(&[cmd.name.as_bytes(), args.arg(1)]) {
            if sub.index != cmd.index {
                return sub;
            }
        }
    }
    cmd
}

// === impl KeyPerm ===

impl KeyPerm {
    /// Neither read nor write.
    pub const NONE: KeyPerm = KeyPerm(0);
    /// Read (`%R~`).
    pub const READ: KeyPerm = KeyPerm(1);
    /// Write (`%W~`).
    pub const WRITE: KeyPerm = KeyPerm(2);
    /// Read and write (`~` or `%RW~`).
    pub const READ_WRITE: KeyPerm = KeyPerm(3);

    /// The access Redis 7.0 demands for a key with these [`key_flag`] bits: read for
    /// `access`, write for `insert`, `delete` or `update` (`RO`/`RW`/`OW`/`RM` alone demand
    /// nothing beyond a matching pattern).
    pub const fn for_key_flags(flags: u32) -> KeyPerm {
        let mut perm = 0;
        if flags & key_flag::ACCESS != 0 {
            perm |= KeyPerm::READ.0;
        }
        if flags & (key_flag::INSERT | key_flag::DELETE | key_flag::UPDATE) != 0 {
            perm |= KeyPerm::WRITE.0;
        }
        KeyPerm(perm)
    }

    /// Whether every access in `other` is also in `self`.
    #[inline]
    pub const fn contains(self, other: KeyPerm) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both accesses.
    #[inline]
    pub const fn union(self, other: KeyPerm) -> KeyPerm {
        KeyPerm(self.0 | other.0)
    }

    /// How a key pattern with this access is written: `~`, `%R~`, `%W~` (`%~` for none,
    /// which no rule can produce).
    pub const fn rule_prefix(self) -> &'static str {
        match self.0 {
            3 => "~",
            1 => "%R~",
            2 => "%W~",
            _ => "%~",
        }
    }
}

// === impl Denied ===

impl Denied {
    /// The whole RESP error reply: `-NOPERM this user has no permissions to run the 'get'
    /// command\r\n` and its key and channel forms, as Redis 7.0 sends them. Allocates for
    /// [`Denied::Command`] only.
    pub fn reply(&self) -> Bytes {
        match self {
            Denied::Command { .. } => Bytes::from(format!("-{self}\r\n")),
            Denied::Key { .. } => Bytes::from_static(replies::NOPERM_KEY),
            Denied::Channel { .. } => Bytes::from_static(replies::NOPERM_CHANNEL),
        }
    }
}

impl fmt::Display for Denied {
    /// The error text without `-` and CRLF.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::Command { name } => write!(
                f,
                "NOPERM this user has no permissions to run the '{name}' command"
            ),
            Denied::Key { .. } => f.write_str(NOPERM_KEY),
            Denied::Channel { .. } => f.write_str(NOPERM_CHANNEL),
        }
    }
}

impl std::error::Error for Denied {}
