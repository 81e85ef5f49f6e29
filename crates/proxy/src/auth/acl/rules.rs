//! Applying one `ACL SETUSER` rule to [`AclRules`], as Redis 7.0's `ACLSetUser` and
//! `ACLSetSelector` do for the root selector, with Redis's error wording.

use slotgate_commands::{all, lookup, lookup_name, Category, Command};

use super::{AclRules, KeyPattern, KeyPerm, WORDS};

/// A rule that Redis would refuse, or that slotgate does not support.
///
/// Displays like Redis's `ACL SETUSER` error: `Error in ACL SETUSER modifier '+nosuch':
/// Unknown command or category name in ACL`. A password rule is shown as its first character
/// only, so the error never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Error in ACL SETUSER modifier '{rule}': {kind}")]
pub struct RuleError {
    rule: String,
    kind: RuleErrorKind,
}

/// What is wrong with a rule. The first five are Redis's own refusals and texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RuleErrorKind {
    /// Not a rule, or a key/channel pattern with whitespace or NUL, or a bad `%` prefix.
    #[error("Syntax error")]
    Syntax,
    /// `+name`, `-name`, `+@name`: no such command, subcommand or category.
    #[error("Unknown command or category name in ACL")]
    UnknownName,
    /// A key pattern after `allkeys` or `~*`.
    #[error(
        "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does \
         not have any effect. Try 'resetkeys' to start with an empty list of patterns"
    )]
    KeyPatternAfterAllKeys,
    /// A channel pattern after `allchannels` or `&*`.
    #[error(
        "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and \
         does not have any effect. Try 'resetchannels' to start with an empty list of channels"
    )]
    ChannelPatternAfterAllChannels,
    /// `+config|get|x`.
    #[error("Allowing first-arg of a subcommand is not supported")]
    FirstArgOfSubcommand,
    /// `+select|0`: Redis 7.0 accepts it (deprecated); slotgate does not.
    #[error(
        "slotgate does not support first-arg rules (+command|arg) for commands without \
         subcommands; allow or deny the whole command"
    )]
    FirstArg,
    /// `>pass`, `<pass`, `#hash`, `!hash`, `nopass`, `resetpass`.
    #[error(
        "passwords are not ACL rules in slotgate; set the user's password, password_sha256 \
         or password_file field"
    )]
    Password,
    /// `(...)`: selectors.
    #[error("slotgate does not support ACL selectors")]
    Selector,
    /// `sanitize-payload`, `skip-sanitize-payload`.
    #[error(
        "slotgate does not support per-user payload sanitization; configure \
         sanitize-dump-payload on the Redis servers"
    )]
    Sanitize,
}

// === impl RuleError ===

impl RuleError {
    fn new(rule: &str, kind: RuleErrorKind) -> Self {
        let secret = matches!(rule.as_bytes().first(), Some(b'>' | b'<' | b'#' | b'!'));
        let rule = if secret && rule.len() > 1 {
            format!("{}...", &rule[..1])
        } else {
            rule.to_string()
        };
        RuleError { rule, kind }
    }

    /// The offending rule as written (a password rule cut to its first character).
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// What is wrong with it.
    pub fn kind(&self) -> RuleErrorKind {
        self.kind
    }
}

// === impl AclRules ===

impl AclRules {
    /// Applies one rule, as `ACL SETUSER name <rule>` does to an existing user:
    ///
    /// | rule | effect |
    /// | --- | --- |
    /// | `on`, `off` | enable, disable |
    /// | `+cmd`, `-cmd` | allow or deny a command with all its subcommands |
    /// | `+cmd\|sub`, `-cmd\|sub` | one subcommand of a container (`config\|get`) |
    /// | `+@cat`, `-@cat` | every command and subcommand in the category |
    /// | `+@all`/`allcommands`, `-@all`/`nocommands` | every command |
    /// | `~pat`, `%R~pat`, `%W~pat`, `%RW~pat` | keys matching `pat`: any / read / write access |
    /// | `allkeys` (= `~*`), `resetkeys` | every key; forget the key patterns |
    /// | `&pat`, `allchannels` (= `&*`), `resetchannels` | Pub/Sub channels |
    /// | `reset` | `off`, `resetkeys`, `resetchannels`, `-@all` |
    /// | `clearselectors` | nothing (there are no selectors) |
    ///
    /// Keywords are case-insensitive; an empty rule does nothing. A refused rule changes
    /// nothing.
    ///
    /// # Errors
    /// [`RuleError`] for a rule Redis refuses (same reason) or slotgate does not support.
    pub fn apply(&mut self, rule: &str) -> Result<(), RuleError> {
        let err = |kind| Err(RuleError::new(rule, kind));
        let is = |word: &str| rule.eq_ignore_ascii_case(word);
        let first = rule.as_bytes().first().copied();
        if rule.is_empty() {
            Ok(())
        } else if is("on") || is("off") {
            self.enabled = is("on");
            Ok(())
        } else if is("nopass")
            || is("resetpass")
            || matches!(first, Some(b'>' | b'<' | b'#' | b'!'))
        {
            err(RuleErrorKind::Password)
        } else if is("sanitize-payload") || is("skip-sanitize-payload") {
            err(RuleErrorKind::Sanitize)
        } else if first == Some(b'(') {
            err(RuleErrorKind::Selector)
        } else if is("clearselectors") {
            Ok(())
        } else if is("reset") {
            *self = AclRules::new();
            self.enabled = false;
            Ok(())
        } else {
            self.apply_selector_rule(rule)
                .map_err(|kind| RuleError::new(rule, kind))
        }
    }

    /// Redis's `ACLSetSelector`: key, channel and command rules.
    fn apply_selector_rule(&mut self, rule: &str) -> Result<(), RuleErrorKind> {
        let is = |word: &str| rule.eq_ignore_ascii_case(word);
        let bytes = rule.as_bytes();
        if is("allkeys") || is("~*") {
            self.all_keys = true;
            self.key_patterns.clear();
        } else if is("resetkeys") {
            self.all_keys = false;
            self.key_patterns.clear();
        } else if is("allchannels") || is("&*") {
            self.all_channels = true;
            self.channel_patterns.clear();
        } else if is("resetchannels") {
            self.all_channels = false;
            self.channel_patterns.clear();
        } else if is("allcommands") || is("+@all") {
            self.commands = [u64::MAX; WORDS];
            self.category_rules.push((None, true));
        } else if is("nocommands") || is("-@all") {
            self.commands = [0; WORDS];
            self.category_rules.push((None, false));
        } else if bytes[0] == b'~' || bytes[0] == b'%' {
            self.add_key_pattern(bytes)?;
        } else if bytes[0] == b'&' {
            self.add_channel_pattern(&bytes[1..])?;
        } else if let Some(category) = rule.strip_prefix("+@") {
            self.set_category(category, true)?;
        } else if let Some(category) = rule.strip_prefix("-@") {
            self.set_category(category, false)?;
        } else if let Some(name) = rule.strip_prefix('+') {
            self.allow_command(name)?;
        } else if let Some(name) = rule.strip_prefix('-') {
            let cmd = lookup_acl_name(name).ok_or(RuleErrorKind::UnknownName)?;
            self.change_command(cmd, false);
        } else {
            return Err(RuleErrorKind::Syntax);
        }
        Ok(())
    }

    /// `~pat` or `%<R|W>...~pat`.
    fn add_key_pattern(&mut self, rule: &[u8]) -> Result<(), RuleErrorKind> {
        if self.all_keys {
            return Err(RuleErrorKind::KeyPatternAfterAllKeys);
        }
        let (perm, pattern) = if rule[0] == b'%' {
            // Each of R and W at most once, then `~`; `%R` alone is the empty pattern.
            let mut perm = KeyPerm::NONE;
            let mut rest = &rule[1..];
            while let Some((&c, tail)) = rest.split_first() {
                rest = tail;
                let add = match c.to_ascii_uppercase() {
                    b'R' => KeyPerm::READ,
                    b'W' => KeyPerm::WRITE,
                    b'~' if perm != KeyPerm::NONE => break,
                    _ => return Err(RuleErrorKind::Syntax),
                };
                if perm.contains(add) {
                    return Err(RuleErrorKind::Syntax);
                }
                perm = perm.union(add);
            }
            if perm == KeyPerm::NONE {
                return Err(RuleErrorKind::Syntax);
            }
            (perm, rest)
        } else {
            (KeyPerm::READ_WRITE, &rule[1..])
        };
        check_pattern(pattern)?;
        match self
            .key_patterns
            .iter_mut()
            .find(|p| *p.pattern == *pattern)
        {
            Some(existing) => existing.perm = existing.perm.union(perm),
            None => self.key_patterns.push(KeyPattern {
                pattern: pattern.into(),
                perm,
            }),
        }
        Ok(())
    }

    /// `&pat`.
    fn add_channel_pattern(&mut self, pattern: &[u8]) -> Result<(), RuleErrorKind> {
        if self.all_channels {
            return Err(RuleErrorKind::ChannelPatternAfterAllChannels);
        }
        check_pattern(pattern)?;
        if !self.channel_patterns.iter().any(|p| **p == *pattern) {
            self.channel_patterns.push(pattern.into());
        }
        Ok(())
    }

    /// `+name` and `+name|sub`.
    fn allow_command(&mut self, name: &str) -> Result<(), RuleErrorKind> {
        let Some((base, sub)) = name.rsplit_once('|') else {
            let cmd = lookup_acl_name(name).ok_or(RuleErrorKind::UnknownName)?;
            self.change_command(cmd, true);
            return Ok(());
        };
        let cmd = lookup_acl_name(base).ok_or(RuleErrorKind::UnknownName)?;
        if base.contains('|') {
            return Err(RuleErrorKind::FirstArgOfSubcommand);
        }
        if sub.is_empty() {
            return Err(RuleErrorKind::Syntax);
        }
        if !cmd.is_container() {
            return Err(RuleErrorKind::FirstArg);
        }
        let sub = lookup_acl_name(name).ok_or(RuleErrorKind::UnknownName)?;
        self.change_command(sub, true);
        Ok(())
    }

    /// `+@name` / `-@name`: Redis's `ACLSetSelectorCommandBitsForCategory`. A container in
    /// the category changes with all its subcommands (`-@slow` denies `CLIENT ID`, since
    /// `CLIENT` itself is `@slow`); subcommands in it change one by one.
    fn set_category(&mut self, name: &str, allow: bool) -> Result<(), RuleErrorKind> {
        let category = Category::from_name(name).ok_or(RuleErrorKind::UnknownName)?;
        self.category_rules.push((Some(category), allow));
        for cmd in all() {
            if cmd.in_category(category) {
                self.change_command(cmd, allow);
            }
            for sub in cmd.subcommands {
                if sub.in_category(category) {
                    self.set_command_bit(sub.index, allow);
                }
            }
        }
        Ok(())
    }

    /// Redis's `ACLChangeSelectorPerm`: the command and every subcommand it has.
    fn change_command(&mut self, cmd: &Command, allow: bool) {
        self.set_command_bit(cmd.index, allow);
        for sub in cmd.subcommands {
            self.set_command_bit(sub.index, allow);
        }
    }
}

/// Redis's `ACLStringHasSpaces`: patterns may hold no whitespace and no NUL.
fn check_pattern(pattern: &[u8]) -> Result<(), RuleErrorKind> {
    let bad = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r' | 0);
    if pattern.iter().any(bad) {
        Err(RuleErrorKind::Syntax)
    } else {
        Ok(())
    }
}

/// A command by the name an ACL rule uses: `get`, or `container|sub` for a subcommand
/// (case-insensitive). `None` for anything else, including `get|x` and `a|b|c`.
fn lookup_acl_name(name: &str) -> Option<&'static Command> {
    match name.split_once('|') {
        None => lookup_name(name.as_bytes()),
        Some((base, sub)) => {
            let container = lookup_name(base.as_bytes()).filter(|c| c.is_container())?;
            let found = lookup(&[base.as_bytes(), sub.as_bytes()])?;
            (found.index != container.index).then_some(found)
        }
    }
}
