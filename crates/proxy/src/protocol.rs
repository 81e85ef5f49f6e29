//! The two reply protocols a client may speak: RESP2 (the default) and RESP3 (after
//! `HELLO 3`). Replies from nodes pass through untouched — a RESP3 client's commands go over
//! upstream connections that speak RESP3 too — so only the replies slotgate makes itself
//! differ: nulls, maps, verbatim strings, and Pub/Sub pushes.

use bytes::{Bytes, BytesMut};
use slotgate_resp::{aggregate_children, encode};

/// `HELLO 3` as sent to a node.
pub(crate) const HELLO3: &[u8] = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n";
/// `HELLO 2` as sent to a node.
pub(crate) const HELLO2: &[u8] = b"*2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n";

/// A connection's reply protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) enum Protocol {
    /// RESP2, every connection's protocol until `HELLO 3`.
    #[default]
    Resp2,
    /// RESP3.
    Resp3,
}

/// How a client's commands travel to the nodes: the protocol of the connections they go
/// over, the database those select (0 unless the client said `SELECT n`, which only
/// standalone and sentinel modes allow), and whether its reads may go to replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct Dialect {
    /// RESP2 or RESP3.
    pub proto: Protocol,
    /// The database number.
    pub db: u16,
    /// Its reads go to primaries even under `upstream.read_from`: it tracks keys
    /// (`CLIENT TRACKING`), and a lagging replica could answer a read with a value whose
    /// invalidation the primary has already sent.
    pub primary_reads: bool,
}

impl Dialect {
    /// RESP2 on database 0: what slotgate's own conversations use.
    pub const RESP2: Dialect = Dialect {
        proto: Protocol::Resp2,
        db: 0,
        primary_reads: false,
    };
}

impl Protocol {
    /// The version number HELLO takes and reports.
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }

    /// The `HELLO <version>` command that switches a node connection to this protocol.
    pub fn hello(self) -> &'static [u8] {
        match self {
            Protocol::Resp2 => HELLO2,
            Protocol::Resp3 => HELLO3,
        }
    }

    /// A null where RESP2 has a null bulk string (`$-1`).
    pub fn null_bulk(self) -> &'static [u8] {
        match self {
            Protocol::Resp2 => b"$-1\r\n",
            Protocol::Resp3 => b"_\r\n",
        }
    }

    /// A null where RESP2 has a null array (`*-1`): EXEC aborted by WATCH.
    pub fn null_array(self) -> &'static [u8] {
        match self {
            Protocol::Resp2 => b"*-1\r\n",
            Protocol::Resp3 => b"_\r\n",
        }
    }

    /// A map of `pairs` entries: RESP3 `%`, RESP2 a flat array of twice as many elements.
    pub fn map_header(self, buf: &mut BytesMut, pairs: usize) {
        match self {
            Protocol::Resp2 => encode::array_header(buf, pairs * 2),
            Protocol::Resp3 => encode::map_header(buf, pairs),
        }
    }

    /// Text Redis sends as a verbatim string (INFO, CLIENT INFO, CLUSTER NODES …): RESP3
    /// `=len\r\ntxt:…`, RESP2 a bulk string.
    pub fn verbatim(self, buf: &mut BytesMut, text: &[u8]) {
        match self {
            Protocol::Resp2 => encode::bulk(buf, text),
            Protocol::Resp3 => {
                buf.extend_from_slice(b"=");
                buf.extend_from_slice((text.len() + 4).to_string().as_bytes());
                buf.extend_from_slice(b"\r\ntxt:");
                buf.extend_from_slice(text);
                buf.extend_from_slice(b"\r\n");
            }
        }
    }

    /// [`Protocol::verbatim`] as a finished reply.
    pub fn verbatim_reply(self, text: &[u8]) -> Bytes {
        let mut b = BytesMut::with_capacity(text.len() + 24);
        self.verbatim(&mut b, text);
        b.freeze()
    }

    /// A Pub/Sub frame from a RESP2 link (`*3 message …`, a confirmation) as this client
    /// expects it: unchanged for RESP2; for RESP3 a push (`>`), with a nil channel as `_`.
    pub fn pubsub_frame(self, frame: Bytes) -> Bytes {
        if self == Protocol::Resp2 || frame.first() != Some(&b'*') {
            return frame;
        }
        let Some(children) = aggregate_children(&frame) else {
            return frame;
        };
        let mut b = BytesMut::with_capacity(frame.len() + 4);
        encode::push_header(&mut b, children.len());
        for child in children {
            if &child[..] == b"$-1\r\n" {
                b.extend_from_slice(b"_\r\n");
            } else {
                b.extend_from_slice(&child);
            }
        }
        b.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes() {
        let msg = Bytes::from_static(b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n");
        assert_eq!(Protocol::Resp2.pubsub_frame(msg.clone()), msg);
        assert_eq!(
            &Protocol::Resp3.pubsub_frame(msg)[..],
            b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
        );
        let none = Bytes::from_static(b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
        assert_eq!(
            &Protocol::Resp3.pubsub_frame(none)[..],
            b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n"
        );
    }

    #[test]
    fn verbatim() {
        let mut b = BytesMut::new();
        Protocol::Resp3.verbatim(&mut b, b"a:1\r\n");
        assert_eq!(&b[..], b"=9\r\ntxt:a:1\r\n\r\n");
        let mut b = BytesMut::new();
        Protocol::Resp2.verbatim(&mut b, b"a:1\r\n");
        assert_eq!(&b[..], b"$5\r\na:1\r\n\r\n");
    }
}
