//! A tiny blocking RESP2 client with hard timeouts, used by the kit to inspect nodes.
//!
//! The kit polls cluster state many times a second; forking `redis-cli` for each look would
//! load the two cores, and a full client library may hang in its handshake on a `SIGSTOP`ped
//! node. This client connects, sends one command, reads one reply and hangs up, each step
//! bounded by a timeout. Tests that exercise slotgate use real clients (redis-rs, redis-cli),
//! not this.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR …` (without the leading `-`)
    Error(String),
    /// `:42`
    Int(i64),
    /// `$…` (`None` for a null bulk string)
    Bulk(Option<Vec<u8>>),
    /// `*…` (`None` for a null array)
    Array(Option<Vec<Reply>>),
}

// === impl Reply ===

impl Reply {
    /// The reply as text if it is a status or bulk string (lossy UTF-8).
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Status(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The text of a status or bulk string reply.
    ///
    /// # Panics
    /// On any other reply.
    pub fn string(&self) -> String {
        self.text()
            .unwrap_or_else(|| panic!("expected a string, got {self:?}"))
    }

    /// The elements of an array reply.
    ///
    /// # Panics
    /// On any other reply.
    pub fn array(self) -> Vec<Reply> {
        match self {
            Reply::Array(Some(a)) => a,
            other => panic!("expected an array, got {other:?}"),
        }
    }

    /// The value of an integer reply.
    ///
    /// # Panics
    /// On any other reply.
    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(i) => *i,
            other => panic!("expected an integer, got {other:?}"),
        }
    }
}

/// Sends `args` as one command to `127.0.0.1:port` and returns the reply.
///
/// # Errors
/// A text description if connecting, writing or reading fails or takes longer than
/// `timeout` per step, or if the reply is not valid RESP2. An error *reply* is `Ok(Reply::Error)`.
pub fn query(port: u16, args: &[&str], timeout: Duration) -> Result<Reply, String> {
    exchange(port, &[args], timeout)
}

/// Like [`query`], after `AUTH password` on the same connection (a server with
/// `requirepass`, such as a sentinel with its own password).
///
/// # Errors
/// As [`query`]; a refused AUTH is an error too.
pub fn query_authed(
    port: u16,
    password: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<Reply, String> {
    exchange(port, &[&["AUTH", password], args], timeout)
}

/// Send `commands` on one connection; the last one's reply (every earlier one must not be
/// an error).
fn exchange(port: u16, commands: &[&[&str]], timeout: Duration) -> Result<Reply, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let fail = |what: &str, e: std::io::Error| format!("{what} 127.0.0.1:{port}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| fail("connect", e))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| fail("set timeout", e))?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| fail("set timeout", e))?;
    let mut wire = Vec::new();
    for args in commands {
        wire.extend(encode(args));
    }
    stream.write_all(&wire).map_err(|e| fail("write to", e))?;
    let mut reader = BufReader::new(stream);
    let mut last = None;
    for (i, _) in commands.iter().enumerate() {
        let reply =
            read_reply(&mut reader).map_err(|e| format!("read from 127.0.0.1:{port}: {e}"))?;
        if i + 1 < commands.len() {
            if let Reply::Error(e) = &reply {
                return Err(format!("{:?} on port {port}: -{e}", commands[i]));
            }
        }
        last = Some(reply);
    }
    last.ok_or_else(|| "no command".to_string())
}

/// Like [`query`], but expects a status or bulk string reply and returns it as text.
///
/// # Errors
/// As [`query`], plus any other kind of reply (an error reply is reported with its text).
pub fn query_text(port: u16, args: &[&str], timeout: Duration) -> Result<String, String> {
    match query(port, args, timeout)? {
        Reply::Error(e) => Err(format!("{args:?} on port {port}: -{e}")),
        reply => reply
            .text()
            .ok_or_else(|| format!("{args:?} on port {port}: unexpected {reply:?}")),
    }
}

/// Encodes a command as a RESP multibulk.
pub fn encode<T: AsRef<[u8]>>(args: &[T]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        let arg = arg.as_ref();
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one reply (recursively for arrays).
pub fn read_reply(reader: &mut impl BufRead) -> Result<Reply, String> {
    let mut line = Vec::new();
    reader
        .read_until(b'\n', &mut line)
        .map_err(|e| e.to_string())?;
    if !line.ends_with(b"\r\n") {
        return Err(format!(
            "truncated reply line {:?}",
            String::from_utf8_lossy(&line)
        ));
    }
    line.truncate(line.len() - 2);
    let Some((&kind, rest)) = line.split_first() else {
        return Err("empty reply line".to_string());
    };
    let rest = String::from_utf8_lossy(rest).into_owned();
    let number = || {
        rest.parse::<i64>()
            .map_err(|_| format!("bad length {rest:?}"))
    };
    match kind {
        b'+' => Ok(Reply::Status(rest)),
        b'-' => Ok(Reply::Error(rest)),
        b':' => Ok(Reply::Int(number()?)),
        b'$' => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Reply::Bulk(None));
            };
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body).map_err(|e| e.to_string())?;
            body.truncate(len);
            Ok(Reply::Bulk(Some(body)))
        }
        b'*' => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Reply::Array(None));
            };
            let items = (0..len)
                .map(|_| read_reply(reader))
                .collect::<Result<_, _>>()?;
            Ok(Reply::Array(Some(items)))
        }
        other => Err(format!("unknown reply type byte {other:#04x}")),
    }
}
