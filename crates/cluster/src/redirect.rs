//! Parsing `-MOVED <slot> <host>:<port>` and `-ASK <slot> <host>:<port>` error replies.

/// Which redirect Redis answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectKind {
    /// The slot lives elsewhere for good: update the map and resend.
    Moved,
    /// Only this command, only now: send `ASKING` + the command to the target.
    Ask,
}

/// A parsed redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// MOVED or ASK.
    pub kind: RedirectKind,
    /// The slot the command hashed to.
    pub slot: u16,
    /// The endpoint as Redis gave it (`host:port`, `[v6]:port` or `:port` for "the node you asked").
    pub addr: String,
}

impl Redirect {
    /// Parse the text of an error reply (with or without the leading `-` and trailing CRLF).
    /// Returns `None` for anything that is not a well-formed MOVED/ASK.
    pub fn parse(text: &[u8]) -> Option<Redirect> {
        let text = text.strip_prefix(b"-").unwrap_or(text);
        let text = text.strip_suffix(b"\r\n").unwrap_or(text);
        let text = std::str::from_utf8(text).ok()?;
        let mut parts = text.split(' ');
        let kind = match parts.next()? {
            "MOVED" => RedirectKind::Moved,
            "ASK" => RedirectKind::Ask,
            _ => return None,
        };
        let slot: u16 = parts.next()?.parse().ok()?;
        if slot as usize >= crate::SLOT_COUNT {
            return None;
        }
        let addr = parts.next()?;
        if parts.next().is_some() || !addr.contains(':') {
            return None;
        }
        Some(Redirect {
            kind,
            slot,
            addr: addr.to_string(),
        })
    }

    /// The target address, with an empty endpoint (`:6380`) resolved against the host of `asked`.
    pub fn target(&self, asked: &str) -> String {
        if let Some(port) = self.addr.strip_prefix(':') {
            let host = asked.rsplit_once(':').map(|(h, _)| h).unwrap_or(asked);
            format!("{host}:{port}")
        } else {
            self.addr.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_moved_and_ask() {
        let r = Redirect::parse(b"-MOVED 3999 127.0.0.1:6381\r\n").unwrap();
        assert_eq!(r.kind, RedirectKind::Moved);
        assert_eq!(r.slot, 3999);
        assert_eq!(r.addr, "127.0.0.1:6381");
        let r = Redirect::parse(b"ASK 12182 10.0.0.2:7000").unwrap();
        assert_eq!(r.kind, RedirectKind::Ask);
        assert_eq!(r.target("x:1"), "10.0.0.2:7000");
    }

    #[test]
    fn empty_endpoint_means_the_node_asked() {
        let r = Redirect::parse(b"MOVED 1 :7002").unwrap();
        assert_eq!(r.target("127.0.0.1:7000"), "127.0.0.1:7002");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            &b"MOVED"[..],
            b"MOVED x 1:2",
            b"MOVED 16384 a:1",
            b"ERR foo",
            b"ASK 1 nohost",
            b"MOVED 1 a:1 extra",
        ] {
            assert_eq!(
                Redirect::parse(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
