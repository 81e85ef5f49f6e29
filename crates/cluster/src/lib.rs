//! Redis Cluster knowledge without sockets: which slot a key hashes to ([`slot`]), who owns
//! each slot ([`SlotMap`], built from a `CLUSTER SLOTS` reply), and what a `-MOVED`/`-ASK`
//! redirect says ([`Redirect`]). The proxy routes every command through these; they never do
//! I/O, so they are tested and fuzzed in isolation.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod hash;
mod redirect;
mod slotmap;

pub use error::ClusterError;
pub use hash::{crc16, slot, SLOT_COUNT};
pub use redirect::{Redirect, RedirectKind};
pub use slotmap::{NodeAddr, Shard, SlotMap, UNCOVERED};

#[doc(hidden)]
pub mod fuzzing {
    //! Entry points for the fuzz targets in `fuzz/`.

    /// Parse arbitrary bytes as a `CLUSTER SLOTS` reply; must never panic.
    pub fn cluster_slots(data: &[u8]) {
        if let Ok(Some((value, _))) = slotgate_resp::value::parse_value(data) {
            let _ = crate::SlotMap::from_cluster_slots(&value, "127.0.0.1:7000");
        }
        let _ = crate::Redirect::parse(data);
    }
}
