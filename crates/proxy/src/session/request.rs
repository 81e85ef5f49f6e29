//! A decoded request as the routing families see it: its arguments through the command
//! table's [`ArgSource`] interface ([`ReqArgs`]), the one slot its keys hash to
//! ([`single_slot`]), and whether its command only reads ([`is_readonly`]).

use bytes::Bytes;
use slotgate_commands::{self as commands, ArgSource, Command, KeyIndices};
use slotgate_resp::Request;

use crate::replies;

/// A [`Request`] seen through the command table's argument interface.
pub(crate) struct ReqArgs<'a>(pub &'a Request);

impl ArgSource for ReqArgs<'_> {
    #[inline]
    fn argc(&self) -> usize {
        self.0.argc()
    }
    #[inline]
    fn arg(&self, i: usize) -> &[u8] {
        self.0.arg(i)
    }
}

/// Whether `cmd` only reads (a read-only command may be resent once after a lost
/// connection).
pub(crate) fn is_readonly(cmd: &Command) -> bool {
    cmd.has_flag(commands::flag::READONLY)
}

/// The one slot all keys of `req` hash to (sharded channels count as keys here): `Ok(None)`
/// for a keyless call, or a malformed key count (the node then answers with Redis's exact
/// error for that command), `Err(CROSSSLOT)` for keys in several slots — unless
/// `one_primary` (standalone and sentinel modes, where one server has every key and the
/// first key's slot stands for all).
pub(crate) fn single_slot(
    cmd: &Command,
    req: &Request,
    one_primary: bool,
) -> Result<Option<u16>, Bytes> {
    if let Some(key) = cmd.sole_routing_key(&ReqArgs(req)) {
        return Ok(Some(slotgate_cluster::slot(key)));
    }
    let mut keys = KeyIndices::new();
    if cmd.routing_indices(&ReqArgs(req), &mut keys).is_err() {
        return Ok(None);
    }
    let mut slot = None;
    for i in keys.iter() {
        let s = slotgate_cluster::slot(req.arg(i as usize));
        match slot {
            None => slot = Some(s),
            Some(prev) if prev != s && !one_primary => {
                return Err(Bytes::from_static(replies::CROSSSLOT))
            }
            Some(_) => {}
        }
    }
    Ok(slot)
}
