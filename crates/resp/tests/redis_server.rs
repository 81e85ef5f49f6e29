//! Our request framing and error replies against a real `redis-server` (7.0): for each input,
//! Redis must answer the same number of commands and, where we fail, close the connection with
//! exactly the bytes of our `ProtocolError::to_reply`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use slotgate_resp::fuzzing::decode_in_chunks;
use slotgate_resp::{Limits, ProtocolError};

/// A `redis-server` on a free loopback port, killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let server = RedisServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Send `input`, then read until Redis closes the connection or `want` bytes arrived
    /// (or a deadline passes).
    fn exchange(&self, input: &[u8], want: usize) -> (Vec<u8>, bool) {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        conn.write_all(input).unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        while Instant::now() < deadline {
            match conn.read(&mut chunk) {
                Ok(0) => return (out, true),
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(_) if out.len() >= want => return (out, false),
                Err(_) => {}
            }
        }
        (out, false)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn framing_and_errors_match_redis() {
    let redis = RedisServer::start();
    let cases: Vec<Vec<u8>> = vec![
        b"*2147483648\r\n".to_vec(),
        b"*1\r\n$-1\r\n".to_vec(),
        b"*1\r\n$536870913\r\n".to_vec(),
        b"*1\r\n$04\r\n".to_vec(),
        b"*01\r\n".to_vec(),
        b"*-0\r\n".to_vec(),
        b"*+1\r\n".to_vec(),
        b"*\r\n".to_vec(),
        b"PING\r\n*1\r\nPING\r\n".to_vec(),
        b"*1\r\n\r\n".to_vec(),
        b"*1\r\n\n\r\n".to_vec(),
        b"*1\r\n\xff\r\n".to_vec(),
        b"PING\r\nSET \"a\"b c\r\n".to_vec(),
        b"SET 'a\r\n".to_vec(),
        b"*0\r\n*-1\r\n*-5\r\nPING\r\n".to_vec(),
        b"\r\n\n   \r\nPING\r\nPING\n".to_vec(),
        b"*1\rX$4\rXPING\r\n".to_vec(),
        b"*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n".to_vec(),
        b"PING \"a\"\x0b\r\n".to_vec(),
        b"PING \"\\x41\\n\"\r\n".to_vec(),
        [&[b'A'; 70_000][..]].concat(),
        // 64 KiB of inline content is still accepted.
        [&b"PING "[..], &[b'A'; 65_531], b"\r\n"].concat(),
        [&b"*"[..], &[b'1'; 70_000]].concat(),
        [&b"*1\r\n$"[..], &[b'1'; 70_000]].concat(),
    ];
    for input in cases {
        let ours = decode_in_chunks(Limits::default(), &input, &[usize::MAX]);
        // Each of our requests is a PING (or an ECHO-like PING with an argument).
        let expected_replies = ours.frames.len();
        let (reply, closed) = redis.exchange(&input, expected_replies * 7);
        let shown = String::from_utf8_lossy(&input[..input.len().min(40)]).into_owned();
        let reply_count = reply
            .split(|&b| b == b'\n')
            .filter(|l| l.starts_with(b"+PONG") || l.starts_with(b"$"))
            .count();
        assert_eq!(
            reply_count, expected_replies,
            "{shown:?}: redis said {reply:?}"
        );
        match ours.end {
            Err(e) => {
                assert!(closed, "{shown:?}: redis kept the connection open");
                assert!(
                    reply.ends_with(e.to_reply()),
                    "{shown:?}: ours {:?}, redis {:?}",
                    String::from_utf8_lossy(e.to_reply()),
                    String::from_utf8_lossy(&reply)
                );
            }
            Ok(_) => assert!(!closed, "{shown:?}: redis closed, we did not: {reply:?}"),
        }
    }
    // A sanity check that the error list covers what Redis can say.
    assert_eq!(
        ProtocolError::TooBigInlineRequest.to_reply(),
        b"-ERR Protocol error: too big inline request\r\n"
    );
}
