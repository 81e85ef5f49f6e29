//! The Lua script bodies slotgate has seen (EVAL, EVAL_RO, SCRIPT LOAD), by SHA1, so an
//! EVALSHA that meets `-NOSCRIPT` on a node that never loaded the script — a replica
//! promoted by a failover, a node added by a reshard, a restarted node — is repaired:
//! slotgate sends `SCRIPT LOAD <body>` to that node and the EVALSHA again, once. (Scripts of
//! restricted users: `family::restricted_scripts`.)

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use sha1::{Digest, Sha1};

/// Most bytes of script bodies kept; beyond that new scripts are not remembered (their
/// EVALSHA still works wherever Redis has them).
const MAX_BYTES: usize = 64 * 1024 * 1024;

/// SHA1 (lowercase hex, as Redis prints it) → `SCRIPT LOAD <body>` ready to send.
#[derive(Default)]
pub(crate) struct ScriptCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    loads: HashMap<[u8; 40], Bytes>,
    bytes: usize,
}

fn sha1_hex(body: &[u8]) -> [u8; 40] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha1::digest(body);
    let mut out = [0u8; 40];
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
    out
}

impl ScriptCache {
    /// Remember `body` (from EVAL or SCRIPT LOAD).
    pub fn remember(&self, body: &[u8]) {
        let sha = sha1_hex(body);
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.loads.contains_key(&sha) || inner.bytes + body.len() > MAX_BYTES {
            return;
        }
        let mut wire = BytesMut::new();
        slotgate_resp::encode::command(&mut wire, &[&b"SCRIPT"[..], b"LOAD", body]);
        inner.bytes += body.len();
        inner.loads.insert(sha, wire.freeze());
    }

    /// `SCRIPT LOAD <body>` for the script whose SHA1 is `sha` (any case), if it was seen.
    pub fn load_command(&self, sha: &[u8]) -> Option<Bytes> {
        let key: [u8; 40] = sha.to_ascii_lowercase().try_into().ok()?;
        self.inner.lock().ok()?.loads.get(&key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_matches_redis() {
        // redis-cli SCRIPT LOAD "return 1" → e0e1f9fabfc9d4800c877a703b823ac0578ff8db
        assert_eq!(
            &sha1_hex(b"return 1"),
            b"e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
        let cache = ScriptCache::default();
        cache.remember(b"return 1");
        let load = cache
            .load_command(b"E0E1F9FABFC9D4800C877A703B823AC0578FF8DB")
            .unwrap();
        assert_eq!(
            &load[..],
            b"*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$8\r\nreturn 1\r\n"
        );
        assert!(cache.load_command(b"00").is_none());
    }
}
