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

#[inline(always)]
fn update(crc: u16, byte: u8) -> u16 {
    (crc << 8) ^ TABLE[((crc >> 8) as u8 ^ byte) as usize]
}

/// CRC16/XMODEM (poly 0x1021, init 0), the checksum Redis Cluster uses.
#[inline]
pub fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0, |crc, &b| update(crc, b))
}

/// The hash slot of `key`, honouring hash tags: when the key has a `{` followed later by a `}`
/// with at least one byte between them, only those bytes are hashed. One pass over the key:
/// the checksum is computed while looking for the `{`.
pub fn slot(key: &[u8]) -> u16 {
    let mask = SLOT_COUNT as u16 - 1;
    let mut crc = 0u16;
    for (i, &b) in key.iter().enumerate() {
        if b == b'{' {
            let rest = &key[i + 1..];
            return match rest.iter().position(|&c| c == b'}') {
                Some(len) if len > 0 => crc16(&rest[..len]) & mask,
                // Only the first `{` counts: without a tag after it, the whole key is hashed.
                _ => key[i..].iter().fold(crc, |crc, &b| update(crc, b)) & mask,
            };
        }
        crc = update(crc, b);
    }
    crc & mask
}

/// The part of `key` that is hashed: the bytes between the first `{` and the first `}` after it,
/// if that is non-empty; otherwise the whole key.
#[cfg(test)]
fn hash_tag(key: &[u8]) -> &[u8] {
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
    use super::*;

    #[test]
    fn crc16_reference_vector() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn table_crc_matches_bitwise_crc() {
        fn bitwise(data: &[u8]) -> u16 {
            let mut crc = 0u16;
            for &b in data {
                crc ^= (b as u16) << 8;
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
        let data: Vec<u8> = (0..=255u8).chain(0..=255u8).collect();
        for len in 0..data.len() {
            assert_eq!(crc16(&data[..len]), bitwise(&data[..len]), "len {len}");
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
    fn one_pass_slot_matches_tag_then_crc() {
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
