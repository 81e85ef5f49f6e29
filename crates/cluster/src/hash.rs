//! Key → slot: CRC16/XMODEM of the key (or of its `{hash tag}`) modulo 16384.

/// Number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: usize = 16384;

/// CRC16/XMODEM lookup table (poly 0x1021), built at compile time.
const TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// `TABLES[k][x]`: the CRC of byte `x` followed by `k` zero bytes ([`TABLE`] is `k = 0`).
/// By the linearity of the CRC, eight bytes fold into the register with eight independent
/// lookups (`crc16`'s loop) instead of a chain of eight lookups each waiting on the last.
static TABLES: [[u16; 256]; 8] = {
    let mut tables = [[0u16; 256]; 8];
    tables[0] = TABLE;
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let v = tables[k - 1][i];
            tables[k][i] = (v << 8) ^ TABLE[(v >> 8) as usize];
            i += 1;
        }
        k += 1;
    }
    tables
};

#[inline(always)]
fn update(crc: u16, byte: u8) -> u16 {
    (crc << 8) ^ TABLES[0][((crc >> 8) as u8 ^ byte) as usize]
}

/// CRC16/XMODEM (poly 0x1021, init 0), the checksum Redis Cluster uses.
#[inline]
pub fn crc16(data: &[u8]) -> u16 {
    // Eight bytes per step: the register's two bytes go into the first two, and byte `i`
    // of the step contributes `TABLES[7 - i][..]`.
    let t = &TABLES;
    let mut words = data.chunks_exact(8);
    let mut crc = 0u16;
    for w in &mut words {
        crc = t[7][((crc >> 8) as u8 ^ w[0]) as usize]
            ^ t[6][((crc & 0xff) as u8 ^ w[1]) as usize]
            ^ t[5][w[2] as usize]
            ^ t[4][w[3] as usize]
            ^ t[3][w[4] as usize]
            ^ t[2][w[5] as usize]
            ^ t[1][w[6] as usize]
            ^ t[0][w[7] as usize];
    }
    words.remainder().iter().fold(crc, |crc, &b| update(crc, b))
}

/// The hash slot of `key`, honouring hash tags: when the key has a `{` followed later by a `}`
/// with at least one byte between them, only those bytes are hashed.
pub fn slot(key: &[u8]) -> u16 {
    let hashed = match slotgate_resp::find_byte(key, b'{') {
        Some(open) => {
            let rest = &key[open + 1..];
            match slotgate_resp::find_byte(rest, b'}') {
                Some(len) if len > 0 => &rest[..len],
                // Only the first `{` counts: without a tag after it, the whole key is hashed.
                _ => key,
            }
        }
        None => key,
    };
    crc16(hashed) & (SLOT_COUNT as u16 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::{bitwise_crc16, hash_tag};

    #[test]
    fn crc16_reference_vector() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn table_crc_matches_bitwise_crc() {
        let data: Vec<u8> = (0..=255u8).chain(0..=255u8).collect();
        for len in 0..data.len() {
            assert_eq!(
                crc16(&data[..len]),
                bitwise_crc16(&data[..len]),
                "len {len}"
            );
        }
    }

    #[test]
    fn known_slots() {
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), 3443);
        assert_eq!(slot(b"{user1000}.followers"), 3443);
        assert_eq!(slot(b""), 0);
    }

    #[test]
    fn hash_tag_rules() {
        // empty tag: whole key hashed
        assert_eq!(slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % 16384);
        // first '{' up to first '}' after it
        assert_eq!(slot(b"foo{{bar}}"), slot(b"{bar"));
        assert_eq!(slot(b"foo{bar}{zap}"), slot(b"bar"));
        // no closing brace
        assert_eq!(slot(b"foo{bar"), crc16(b"foo{bar") % 16384);
    }

    #[test]
    fn long_keys_find_the_first_brace_in_any_word_position() {
        // Keys longer than one 8-byte word, with `{` and `}` at every pair of positions
        // (and a second `{` after the first), against the plain definition.
        for len in 0..40usize {
            for open in 0..=len {
                for close in open..=len {
                    let mut key: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                    if open < len {
                        key[open] = b'{';
                    }
                    if close < len && close != open {
                        key[close] = b'}';
                    }
                    if close + 2 < len {
                        key[close + 2] = b'{';
                    }
                    assert_eq!(slot(&key), crc16(hash_tag(&key)) % 16384, "{key:?}");
                }
            }
        }
        // Bytes that differ from `{` only in high bits or by one must not match.
        let key = [
            b'{' ^ 0x80,
            b'{' + 1,
            b'{' - 1,
            0xff,
            0,
            b'z',
            b'|',
            b'{',
            b'x',
            b'}',
        ];
        assert_eq!(slot(&key), crc16(b"x") % 16384);
    }

    #[test]
    fn slot_matches_tag_then_crc() {
        // Every key over a small alphabet rich in braces, up to 6 bytes long.
        let alphabet = [b'a', b'{', b'}', b'z'];
        let mut key = Vec::new();
        for len in 0..=6u32 {
            for n in 0..4usize.pow(len) {
                key.clear();
                let mut x = n;
                for _ in 0..len {
                    key.push(alphabet[x % 4]);
                    x /= 4;
                }
                assert_eq!(slot(&key), crc16(hash_tag(&key)) % 16384, "{key:?}");
            }
        }
    }
}
