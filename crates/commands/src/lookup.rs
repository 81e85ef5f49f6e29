//! Finding a command: `argv[0]` (and `argv[1]` for containers) to a static [`Command`],
//! case-insensitively, without allocating.

use crate::table_data::{find_sub, find_top, BY_INDEX, COMMANDS, PACK};
use crate::{ArgSource, Command, Family};

/// The command for a whole command line: the subcommand entry when `argv[0]` is a container
/// and `argv[1]` names one of its subcommands, else the top-level command. Case-insensitive.
///
/// `None` for an empty line or an unknown name.
#[inline]
pub fn lookup<A: ArgSource + ?Sized>(args: &A) -> Option<&'static Command> {
    if args.argc() == 0 {
        return None;
    }
    let top = lookup_name(args.arg(0))?;
    if top.is_container() && args.argc() > 1 {
        if let Some(sub) = find_subcommand(top, args.arg(1)) {
            return Some(sub);
        }
    }
    Some(top)
}

/// [`lookup`] that remembers the last command it found by name alone, so a pipeline of one
/// command (a bulk load, a batch of GETs) compares `argv[0]` with the last name instead of
/// searching the table. Containers (`CONFIG GET` …) are never remembered: their entry
/// depends on `argv[1]`. One per client connection.
#[derive(Clone, Debug, Default)]
pub struct LookupCache {
    /// `argv[0]` exactly as the client spelled it, zero-padded.
    name: [u8; CACHED_NAME],
    len: usize,
    /// What `name` found; `None` while nothing is remembered.
    cmd: Option<&'static Command>,
}

/// Longest `argv[0]` a [`LookupCache`] remembers.
const CACHED_NAME: usize = 16;

impl LookupCache {
    /// The same as [`lookup`]`(args)`.
    #[inline]
    pub fn lookup<A: ArgSource + ?Sized>(&mut self, args: &A) -> Option<&'static Command> {
        if args.argc() == 0 {
            return None;
        }
        let name = args.arg(0);
        if let Some(cmd) = self.cmd {
            if name.len() == self.len && same_bytes(name, &self.name) {
                return Some(cmd);
            }
        }
        let top = lookup_name(name)?;
        if top.is_container() {
            return lookup(args);
        }
        if name.len() <= CACHED_NAME {
            self.name[..name.len()].copy_from_slice(name);
            self.len = name.len();
            self.cmd = Some(top);
        }
        Some(top)
    }
}

/// Whether `name` equals the start of `cached`, for a name of at most [`CACHED_NAME`]
/// bytes. Folds the differences instead of stopping at the first, so the compiler keeps a
/// short loop where `==` on slices calls `memcmp` (a call for three bytes, on every
/// request of a pipeline).
#[inline]
fn same_bytes(name: &[u8], cached: &[u8; CACHED_NAME]) -> bool {
    name.iter()
        .zip(cached)
        .fold(0, |diff, (a, b)| diff | (a ^ b))
        == 0
}

/// The top-level command named `name`, case-insensitively (`b"GeT"` finds `get`).
#[inline]
pub fn lookup_name(name: &[u8]) -> Option<&'static Command> {
    find_top(pack(name)?).map(|i| &COMMANDS[i])
}

/// The subcommand of `container` named `sub`, case-insensitively.
#[inline]
fn find_subcommand(container: &'static Command, sub: &[u8]) -> Option<&'static Command> {
    let pos = find_sub(container.index, pack(sub)?)?;
    container.subcommands.get(pos)
}

/// `name` lowercased, zero-padded and packed into little-endian words, with its length in
/// the last byte (so `b"get\0"` does not pack like `b"get"`). `None` when it is too long or
/// not ASCII: no command name is either.
#[inline]
fn pack(name: &[u8]) -> Option<[u64; 3]> {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    if name.len() >= PACK {
        return None;
    }
    let mut buf = [0u8; PACK];
    buf[..name.len()].copy_from_slice(name);
    buf[PACK - 1] = name.len() as u8;
    let mut words = [0u64; 3];
    for (i, word) in words.iter_mut().enumerate() {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&buf[i * 8..i * 8 + 8]);
        let x = u64::from_le_bytes(bytes);
        if x & HIGH != 0 {
            return None;
        }
        // Per byte (all < 0x80, so no carry between bytes): the high bit of `b + 0x3f`
        // says b >= 'A', that of `b + 0x25` says b > 'Z'. Uppercase bytes get 0x20 added.
        let at_least_a = x.wrapping_add(0x3f3f_3f3f_3f3f_3f3f);
        let above_z = x.wrapping_add(0x2525_2525_2525_2525);
        *word = x | ((at_least_a & !above_z & HIGH) >> 2);
    }
    Some(words)
}

/// The command or subcommand whose [`Command::index`] is `index`.
///
/// # Panics
/// When `index >= COMMAND_COUNT as u16`.
#[inline]
pub fn by_index(index: u16) -> &'static Command {
    BY_INDEX[index as usize]
}

/// Every top-level command, sorted by name (subcommands are in [`Command::subcommands`]).
pub fn all() -> &'static [Command] {
    &COMMANDS
}

/// Whether this command line will block the connection: every [`Family::Blocking`]
/// command, and XREAD/XREADGROUP with a `BLOCK` option before `STREAMS`.
pub fn is_blocking_call<A: ArgSource + ?Sized>(cmd: &Command, args: &A) -> bool {
    match cmd.family {
        Family::Blocking => true,
        _ if cmd.name == "xread" || cmd.name == "xreadgroup" => crate::xread_options(args).block,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
