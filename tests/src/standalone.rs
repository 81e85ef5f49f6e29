//! One standalone redis-server (no cluster) and a blocking, pipelining RESP2 connection to
//! it, for the differential tests that compare slotgate's own tables and rules with what
//! Redis answers (`slotgate-commands`' command table against `COMMAND INFO`/`GETKEYS`,
//! `slotgate-proxy`'s ACL rules against `ACL DRYRUN`).
//!
//! The server listens on a Unix socket of its own and on no TCP port: a port picked as free
//! can be taken by another process before the server binds it, and the server answering
//! there is then someone else's (which CI once met as a connection reset).

use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::probe::{encode, read_reply, Reply};

/// A redis-server child process, killed on drop.
pub struct RedisServer {
    child: Child,
    socket: PathBuf,
}

impl RedisServer {
    /// Starts redis-server 7.0 (no persistence) and waits until it answers.
    ///
    /// # Panics
    /// When redis-server is not installed, exits, does not answer within 10 s, or is not
    /// version 7.0 (the tables these tests check come from 7.0).
    pub fn start() -> RedisServer {
        let server = Self::start_binary(std::path::Path::new("redis-server"));
        let info = server.connect().call(&["INFO", "server"]).string();
        assert!(
            info.contains("redis_version:7.0."),
            "these tests compare with Redis 7.0; found:\n{info}"
        );
        server
    }

    /// Starts the server the kit's clusters run ([`crate::cluster::cluster_server_binary`]:
    /// Redis 7.0, 8.x or Valkey), for tests that compare slotgate with one server of the
    /// same kind.
    pub fn start_like_cluster() -> RedisServer {
        Self::start_binary(&crate::cluster::cluster_server_binary())
    }

    fn start_binary(binary: &std::path::Path) -> RedisServer {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let socket = std::env::temp_dir().join(format!(
            "slotgate-test-redis-{}-{}.sock",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(binary)
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): these tests need a real redis-server 7.0 \
                     on PATH (Debian/Ubuntu: apt-get install redis-server)"
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
        let _ = conn.call(&["PING"]);
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

    /// A new connection.
    ///
    /// # Panics
    /// When the server cannot be reached.
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

/// A blocking RESP2 connection to a [`RedisServer`].
pub struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Conn {
    /// Sends one command and reads its reply.
    ///
    /// # Panics
    /// When the connection fails or the reply is not RESP2.
    pub fn call<T: AsRef<[u8]>>(&mut self, args: &[T]) -> Reply {
        self.pipeline(&[args.iter().map(|a| a.as_ref().to_vec()).collect()])
            .remove(0)
    }

    /// Sends every command, then reads every reply.
    ///
    /// # Panics
    /// When the connection fails or a reply is not RESP2.
    pub fn pipeline(&mut self, commands: &[Vec<Vec<u8>>]) -> Vec<Reply> {
        let buf: Vec<u8> = commands.iter().flat_map(|args| encode(args)).collect();
        self.writer.write_all(&buf).expect("write to redis-server");
        commands
            .iter()
            .map(|_| read_reply(&mut self.reader).expect("read a reply from redis-server"))
            .collect()
    }
}
