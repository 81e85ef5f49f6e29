//! The configured downstream users (`users:` in the config) and the state of one
//! connection's authentication.
//!
//! Passwords are kept only as SHA-256 digests and compared in constant time. The user table
//! is replaced whole on reload ([`Users::reload`]), each user under the script policy
//! ([`RestrictedScripts`]); a connection's [`ClientAuth`] picks the new table up through a
//! generation counter. The gate that checks every command is `session::gate`.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::auth::acl::{AclRules, RuleError};

/// Consecutive failed authentications on one connection after which every further AUTH
/// reply waits `limits.auth_failure_delay`.
pub const FAILURES_BEFORE_DELAY: u32 = 3;

/// The name AUTH with one argument (`AUTH <password>`) authenticates as.
pub const DEFAULT_USER: &str = "default";

/// A password as slotgate keeps it: only its SHA-256 digest. Compared in constant time;
/// never printed (`Debug` shows `********`).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordCheck {
    digest: [u8; 32],
}

/// A configured downstream user: name, password digest and ACL rules.
#[derive(Debug, Clone)]
pub struct UserSpec {
    /// What clients send as the AUTH user name (`default` for one-argument AUTH).
    pub name: String,
    /// The password check.
    pub password: PasswordCheck,
    /// What the user may do once authenticated; users whose rules say `off` cannot log in.
    pub rules: AclRules,
    /// The rules as written in the config, for `check-config` and log lines.
    pub rules_text: String,
    /// Script and function commands are refused for this user: its rules grant less than
    /// every key and channel and `scripting.restricted_users` is `refuse`. Set when the
    /// user table is installed or reloaded ([`UserSpec::with_script_policy`]).
    scripts_refused: bool,
    /// This user's scripts and functions run on nodes as an ACL user with the same rules
    /// (`scripting.restricted_users: mirror`, a restricted user).
    scripts_mirrored: bool,
}

/// `scripting.restricted_users`: what slotgate does with a script or function command
/// (`@scripting`: EVAL, EVALSHA, FCALL, SCRIPT …, FUNCTION …) from a user whose rules grant
/// less than every key and every channel (`~*` and `&*`).
///
/// On a connection authenticated as slotgate's upstream user, a node runs a script with that
/// user's rights: the keys and channels the script touches inside the node are not checked
/// against the client's rules. Either the node checks them itself, as a user with the
/// client's rules, or the script must not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestrictedScripts {
    /// Run EVAL, EVALSHA and FCALL (and their `_RO` forms) on connections authenticated as
    /// an ACL user that slotgate keeps on each primary with the client's rules (the
    /// default); where slotgate may not create it, refuse with `-NOPERM`.
    #[default]
    Mirror,
    /// Refuse with `-NOPERM`.
    Refuse,
    /// Let them run, unchecked inside the script: such a user can read and write any key
    /// and publish to any channel through a script.
    Allow,
}

/// A `password_sha256` value that is not 64 hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("password_sha256 must be 64 hexadecimal digits (the SHA-256 of the password)")]
pub struct BadDigest;

// === impl PasswordCheck ===

impl PasswordCheck {
    /// The check for `password` (hashed now; the clear text is not kept).
    pub fn from_password(password: &[u8]) -> PasswordCheck {
        PasswordCheck {
            digest: Sha256::digest(password).into(),
        }
    }

    /// The check for a digest written as 64 hex digits (either case), as
    /// `printf %s 'secret' | sha256sum` prints it.
    ///
    /// # Errors
    /// [`BadDigest`] unless `hex` is exactly 64 hex digits.
    pub fn from_sha256_hex(hex: &str) -> Result<PasswordCheck, BadDigest> {
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return Err(BadDigest);
        }
        let mut digest = [0u8; 32];
        for (byte, pair) in digest.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = (hex_value(pair[0]).ok_or(BadDigest)? << 4)
                | hex_value(pair[1]).ok_or(BadDigest)?;
        }
        Ok(PasswordCheck { digest })
    }

    /// Whether `password` is this password: hashes it and compares the digests in constant
    /// time.
    pub fn matches(&self, password: &[u8]) -> bool {
        let candidate: [u8; 32] = Sha256::digest(password).into();
        self.matches_digest(&candidate)
    }

    /// Constant-time comparison of two digests.
    fn matches_digest(&self, candidate: &[u8; 32]) -> bool {
        self.digest.ct_eq(candidate).into()
    }
}

impl fmt::Debug for PasswordCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordCheck(********)")
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

// === impl UserSpec ===

impl UserSpec {
    /// A user with rules parsed from `rules` ([`AclRules::parse`]).
    ///
    /// # Errors
    /// The first rule [`AclRules::parse`] refuses.
    pub fn new(name: &str, password: PasswordCheck, rules: &str) -> Result<UserSpec, RuleError> {
        Ok(UserSpec {
            name: name.to_string(),
            password,
            rules: AclRules::parse(rules)?,
            rules_text: rules.to_string(),
            scripts_refused: false,
            scripts_mirrored: false,
        })
    }

    /// Whether the rules grant less than every key and every channel (`~*` and `&*`): a
    /// script run for this user on a node could reach what the rules forbid.
    pub fn is_restricted(&self) -> bool {
        !(self.rules.allows_all_keys() && self.rules.allows_all_channels())
    }

    /// This user under `policy`: with [`RestrictedScripts::Refuse`], a restricted user's
    /// script and function commands are refused by the gate.
    pub fn with_script_policy(mut self, policy: RestrictedScripts) -> UserSpec {
        self.scripts_refused = policy == RestrictedScripts::Refuse && self.is_restricted();
        self.scripts_mirrored = policy == RestrictedScripts::Mirror && self.is_restricted();
        self
    }

    /// Whether this user's scripts and functions run on the nodes as an ACL user with its
    /// rules (see `family::scripts::ScriptIdentity`).
    pub fn scripts_mirrored(&self) -> bool {
        self.scripts_mirrored
    }

    /// Whether the gate refuses this user's script and function commands.
    pub fn scripts_refused(&self) -> bool {
        self.scripts_refused
    }
}

/// Check a user list the way the engine needs it: unique, well-formed names.
///
/// # Errors
/// A message naming the offending user.
pub fn validate_users(users: &[UserSpec]) -> Result<(), String> {
    for (i, u) in users.iter().enumerate() {
        if u.name.is_empty() || u.name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "users[{i}].name: {:?} must be non-empty, without spaces or control characters",
                u.name
            ));
        }
        if users[..i].iter().any(|o| o.name == u.name) {
            return Err(format!("users: user {:?} is defined twice", u.name));
        }
    }
    Ok(())
}

/// The process's user table, shared by every worker. Replaced whole on reload.
///
/// # Concurrency
/// [`Users::reload`] stores the new table, then bumps the generation (release); a session
/// that reads the new generation (acquire) then finds the new table.
pub(crate) struct Users {
    /// Whether clients must authenticate (users were configured at start). Fixed after
    /// [`Users::install`]: turning authentication on or off needs a restart.
    required: AtomicBool,
    table: ArcSwap<Vec<Arc<UserSpec>>>,
    generation: AtomicU64,
    changed: watch::Sender<u64>,
}

// === impl Users ===

impl Users {
    /// No users: authentication not required.
    pub fn new() -> Users {
        Users {
            required: AtomicBool::new(false),
            table: ArcSwap::from_pointee(Vec::new()),
            generation: AtomicU64::new(0),
            changed: watch::channel(0).0,
        }
    }

    /// Set the users the proxy starts with (before any worker runs); a non-empty list makes
    /// authentication required for the life of the process.
    pub fn install(&self, users: &[UserSpec], scripts: RestrictedScripts) {
        self.required.store(!users.is_empty(), Ordering::Release);
        self.table.store(table(users, scripts));
    }

    /// Replace the table (SIGHUP). Connections keep their authentication; from their next
    /// command they run with their user's new rules, and a connection whose user is gone or
    /// `off` is closed. New passwords apply to new AUTHs only.
    ///
    /// # Errors
    /// When the change would turn authentication on or off (needs a restart), or the list is
    /// invalid; the old table stays.
    pub fn reload(&self, users: &[UserSpec], scripts: RestrictedScripts) -> Result<(), String> {
        validate_users(users)?;
        let required = self.required.load(Ordering::Acquire);
        if required && users.is_empty() {
            return Err(
                "users: removing every user would turn authentication off, which needs a restart"
                    .into(),
            );
        }
        if !required && !users.is_empty() {
            return Err(
                "users: turning authentication on needs a restart (slotgate started without users)"
                    .into(),
            );
        }
        if !required {
            return Ok(());
        }
        self.table.store(table(users, scripts));
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.changed.send_replace(generation);
        tracing::info!(users = users.len(), "users reloaded");
        Ok(())
    }

    /// Whether clients must authenticate.
    pub fn required(&self) -> bool {
        self.required.load(Ordering::Relaxed)
    }

    /// Bumped by every reload.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A receiver that wakes on every reload, when authentication is required.
    pub fn subscribe(&self) -> Option<watch::Receiver<u64>> {
        self.required().then(|| self.changed.subscribe())
    }

    /// The user called `name`, if configured.
    pub fn find(&self, name: &[u8]) -> Option<Arc<UserSpec>> {
        self.table
            .load()
            .iter()
            .find(|u| u.name.as_bytes() == name)
            .cloned()
    }

    /// The user `name` when `password` is its password and it is enabled. Hashes the
    /// password even for an unknown user, so the answer takes about as long either way.
    pub fn authenticate(&self, name: &[u8], password: &[u8]) -> Option<Arc<UserSpec>> {
        let candidate: [u8; 32] = Sha256::digest(password).into();
        let user = self.find(name)?;
        (user.password.matches_digest(&candidate) && user.rules.is_enabled()).then_some(user)
    }
}

/// The shared table of `users`, each under the script policy.
fn table(users: &[UserSpec], scripts: RestrictedScripts) -> Arc<Vec<Arc<UserSpec>>> {
    Arc::new(
        users
            .iter()
            .map(|u| Arc::new(u.clone().with_script_policy(scripts)))
            .collect(),
    )
}

/// What one authentication attempt on a connection gave ([`ClientAuth::log_in`]).
pub(crate) struct Login {
    /// The user is now authenticated.
    pub ok: bool,
    /// After [`FAILURES_BEFORE_DELAY`] consecutive failures: the instant before which the
    /// reply must not be sent (successive delayed replies queue up behind each other).
    pub hold: Option<Instant>,
    /// Consecutive failures on this connection, this one included (0 after a success).
    pub failures: u32,
}

/// A connection's authentication, present when users are configured.
pub(crate) struct ClientAuth {
    /// `None`: not authenticated.
    user: Option<Arc<UserSpec>>,
    /// The [`Users::generation`] `user` was looked up in.
    generation: u64,
    /// Failed AUTH attempts since the last success.
    failures: u32,
    /// The latest time a delayed AUTH reply was held until (delays queue up behind it).
    held_until: Option<Instant>,
}

// === impl ClientAuth ===

impl ClientAuth {
    /// The state of a new connection: `None` when no users are configured, else
    /// unauthenticated.
    pub fn for_new_connection(users: &Users) -> Option<ClientAuth> {
        users.required().then(|| ClientAuth {
            user: None,
            generation: users.generation(),
            failures: 0,
            held_until: None,
        })
    }

    /// The authenticated user.
    pub fn user(&self) -> Option<&UserSpec> {
        self.user.as_deref()
    }

    /// Forget the user (RESET): the connection must authenticate again.
    pub fn log_out(&mut self) {
        self.user = None;
    }

    /// One authentication attempt (AUTH, HELLO AUTH) against `users`. A failure keeps the
    /// previous authentication, like Redis; after [`FAILURES_BEFORE_DELAY`] consecutive
    /// failures every reply, right or wrong, waits `delay` (zero: never).
    pub fn log_in(
        &mut self,
        users: &Users,
        name: &[u8],
        password: &[u8],
        delay: Duration,
    ) -> Login {
        let hold = (self.failures >= FAILURES_BEFORE_DELAY && !delay.is_zero()).then(|| {
            let now = Instant::now();
            let at = self.held_until.map_or(now, |h| h.max(now)) + delay;
            self.held_until = Some(at);
            at
        });
        let generation = users.generation();
        if let Some(user) = users.authenticate(name, password) {
            self.user = Some(user);
            self.generation = generation;
            self.failures = 0;
            return Login {
                ok: true,
                hold,
                failures: 0,
            };
        }
        self.failures = self.failures.saturating_add(1);
        Login {
            ok: false,
            hold,
            failures: self.failures,
        }
    }

    /// Pick up a reload: the user's new rules, or `false` when the user was removed or
    /// turned `off` (the connection must close). Free when nothing was reloaded.
    #[inline]
    pub fn refresh(&mut self, users: &Users) -> bool {
        let generation = users.generation();
        if generation == self.generation {
            return true;
        }
        self.generation = generation;
        let Some(current) = &self.user else {
            return true;
        };
        match users.find(current.name.as_bytes()) {
            Some(new) if new.rules.is_enabled() => {
                self.user = Some(new);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;
