//! A real redis-server for the ACL differential tests, and a small pipelining RESP2 client.
//! A missing redis-server is a test failure with a message saying how to install it.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A redis-server child listening on its own Unix socket only, killed on drop. No TCP port:
/// a port picked as free can be taken by another process before the server binds it.
pub struct RedisServer {
    child: Child,
    socket: PathBuf,
}

impl RedisServer {
    /// Starts redis-server 7.0 and waits until it answers.
    pub fn start() -> RedisServer {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let socket = std::env::temp_dir().join(format!(
            "slotgate-acl-redis-{}-{}.sock",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&socket);
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): the ACL differential tests need a real \
                     redis-server 7.0 on PATH (Debian/Ubuntu: apt-get install redis-server)"
                )
            });
        let mut server = RedisServer { child, socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut conn = loop {
            if let Ok(conn) = server.try_connect() {
                break conn;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("redis-server exited before answering ({status})");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer in 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let info = conn.call(&["INFO", "server"]).text();
        assert!(
            info.contains("redis_version:7.0."),
            "these tests compare with Redis 7.0; found:\n{info}"
        );
        server
    }

    fn try_connect(&self) -> std::io::Result<Conn> {
        let stream = UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    pub fn connect(&self) -> Conn {
        self.try_connect().expect("connect to redis-server")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    pub fn text(&self) -> String {
        match self {
            Reply::Status(s) | Reply::Error(s) => s.clone(),
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("expected text, got {other:?}"),
        }
    }
}

pub struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Conn {
    pub fn call<T: AsRef<[u8]>>(&mut self, args: &[T]) -> Reply {
        self.pipeline(&[args.iter().map(|a| a.as_ref().to_vec()).collect()])
            .remove(0)
    }

    /// Sends every command, then reads every reply.
    pub fn pipeline(&mut self, commands: &[Vec<Vec<u8>>]) -> Vec<Reply> {
        let mut buf = Vec::new();
        for args in commands {
            buf.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in args {
                buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                buf.extend_from_slice(a);
                buf.extend_from_slice(b"\r\n");
            }
        }
        self.writer.write_all(&buf).expect("write to redis-server");
        commands.iter().map(|_| self.read()).collect()
    }

    fn read(&mut self) -> Reply {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .expect("read from redis-server");
        assert!(line.ends_with("\r\n"), "truncated reply line {line:?}");
        line.truncate(line.len() - 2);
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" => Reply::Status(rest.into()),
            "-" => Reply::Error(rest.into()),
            ":" => Reply::Int(rest.parse().expect("integer")),
            "$" => {
                let n: i64 = rest.parse().expect("bulk length");
                if n < 0 {
                    return Reply::Bulk(None);
                }
                let mut data = vec![0; n as usize + 2];
                self.reader.read_exact(&mut data).expect("bulk body");
                data.truncate(n as usize);
                Reply::Bulk(Some(data))
            }
            "*" => {
                let n: i64 = rest.parse().expect("array length");
                if n < 0 {
                    return Reply::Array(None);
                }
                Reply::Array(Some((0..n).map(|_| self.read()).collect()))
            }
            _ => panic!("unexpected RESP2 line {line:?}"),
        }
    }
}
