//! A raw TCP client for byte-exact assertions: send exactly these bytes, expect exactly
//! those bytes back. Real clients (redis-rs, redis-cli) hide the wire; the proxy's error
//! replies and protocol-error handling are contracts on the wire itself.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// At most the last 300 bytes of `bytes`, lossily, for assertion messages.
fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(300);
    format!(
        "[{} bytes] …{}",
        bytes.len(),
        String::from_utf8_lossy(&bytes[start..])
    )
}

/// A connection that speaks bytes.
pub struct RawConn {
    stream: TcpStream,
}

// === impl RawConn ===

impl RawConn {
    /// Connect to `127.0.0.1:port`.
    ///
    /// # Panics
    /// If the connection cannot be made within 5 s.
    pub fn connect(port: u16) -> RawConn {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_nodelay(true).ok();
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
        RawConn { stream }
    }

    /// Write `bytes`; false if the peer already closed the connection.
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Send a command as a multibulk array.
    pub fn send_command(&mut self, args: &[&[u8]]) -> bool {
        self.send(&crate::probe::encode(args))
    }

    /// Read exactly `expected.len()` bytes and assert they equal `expected`.
    ///
    /// # Panics
    /// On a mismatch, a timeout (10 s) or a closed connection.
    pub fn expect(&mut self, expected: &[u8]) {
        let mut got = vec![0u8; expected.len()];
        let mut filled = 0;
        while filled < got.len() {
            match self.stream.read(&mut got[filled..]) {
                Ok(0) => panic!(
                    "connection closed after {:?}; expected {:?}",
                    tail(&got[..filled]),
                    tail(expected)
                ),
                Ok(n) => filled += n,
                Err(e) => panic!(
                    "read failed ({e}) after {:?}; expected {:?}",
                    tail(&got[..filled]),
                    tail(expected)
                ),
            }
        }
        if got != expected {
            let at = got
                .iter()
                .zip(expected)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            let from = at.saturating_sub(40);
            panic!(
                "unexpected reply bytes at offset {at}: got {:?}, expected {:?}",
                String::from_utf8_lossy(&got[from..(at + 80).min(got.len())]),
                String::from_utf8_lossy(&expected[from..(at + 80).min(expected.len())])
            );
        }
    }

    /// Read one line (up to and including CRLF); `None` if the connection closes or nothing
    /// complete arrives within 10 s.
    pub fn read_line(&mut self) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            match self.stream.read(&mut byte) {
                Ok(1) => line.push(byte[0]),
                _ => return None,
            }
        }
        Some(line)
    }

    /// Read one whole RESP2 or RESP3 reply (nested aggregates, and an attribute with the
    /// value it annotates, included) as raw bytes; `None` if the connection closes or
    /// stalls first (10 s per read).
    pub fn read_reply(&mut self) -> Option<Vec<u8>> {
        let mut out = self.read_line()?;
        let len: i64 = std::str::from_utf8(&out[1..out.len() - 2])
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(-1);
        let children = match out[0] {
            b'$' | b'=' | b'!' if len >= 0 => {
                let mut body = vec![0u8; len as usize + 2];
                self.stream.read_exact(&mut body).ok()?;
                out.extend_from_slice(&body);
                0
            }
            b'*' | b'~' | b'>' => len.max(0),
            b'%' => len.max(0) * 2,
            b'|' => len.max(0) * 2 + 1, // the attribute's pairs, then the value itself
            _ => 0,
        };
        for _ in 0..children {
            out.extend_from_slice(&self.read_reply()?);
        }
        Some(out)
    }

    /// Send a command and assert the exact reply.
    pub fn roundtrip(&mut self, args: &[&[u8]], expected: &[u8]) {
        assert!(self.send_command(args), "send failed");
        self.expect(expected);
    }

    /// True if the peer closes the connection within `timeout` (after any pending bytes,
    /// which are discarded).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        self.stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .ok();
        while Instant::now() < deadline {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return true, // reset by peer
            }
        }
        false
    }
}

/// `s` as a RESP bulk string: `$<len>\r\n<s>\r\n`.
pub fn bulk(s: &str) -> Vec<u8> {
    format!("${}\r\n{s}\r\n", s.len()).into_bytes()
}

/// `s` as a RESP bulk string, as text (for replies compared as strings).
pub fn bulk_text(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}
