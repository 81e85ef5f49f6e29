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

    /// Hash arbitrary bytes as a key: [`crate::crc16`] (eight bytes per step) must equal the
    /// bit-by-bit CRC, and [`crate::slot`] (a word-at-a-time brace search) must equal that CRC
    /// of the hash tag found byte by byte.
    pub fn slot(data: &[u8]) {
        let crc = crate::crc16(data);
        assert_eq!(crc, bitwise_crc16(data), "crc16 of {data:?}");
        let want = bitwise_crc16(hash_tag(data)) % crate::SLOT_COUNT as u16;
        assert_eq!(crate::slot(data), want, "slot of {data:?}");
    }

    /// CRC16/XMODEM one bit at a time, straight from its definition (poly 0x1021, init 0):
    /// the reference the table-driven [`crate::crc16`] is checked against.
    pub fn bitwise_crc16(data: &[u8]) -> u16 {
        let mut crc = 0u16;
        for &b in data {
            crc ^= u16::from(b) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    /// The part of `key` that is hashed, found byte by byte: the bytes between the first `{`
    /// and the first `}` after it, if that is non-empty; otherwise the whole key.
    pub fn hash_tag(key: &[u8]) -> &[u8] {
        if let Some(open) = key.iter().position(|&b| b == b'{') {
            if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
                if len > 0 {
                    return &key[open + 1..open + 1 + len];
                }
            }
        }
        key
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn slot_holds_for_odd_keys() {
            for key in [
                &b""[..],
                b"{",
                b"}",
                b"{}",
                b"{{}}",
                b"foo{}{bar}",
                b"{user1000}.following",
                b"0123456789abcdef{x}",
                &[0xfb; 17],
                &[b'{'; 33],
            ] {
                super::slot(key);
            }
        }
    }
}
