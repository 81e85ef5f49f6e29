//! A minimal request/response client for the proxy's own conversations with nodes: the
//! `AUTH` handshake of every upstream connection and the topology refresher's
//! `CLUSTER SLOTS` / `INFO`. Not used for client traffic.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use slotgate_resp::encode;
use slotgate_resp::value::{parse_value, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::config::UpstreamConfig;
use crate::error::ProxyError;
use crate::protocol::Protocol;
use crate::tls::UpstreamTls;

/// A connection to a node: plain TCP, or TLS when `upstream.tls` is set.
pub(crate) enum NodeStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for NodeStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NodeStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            NodeStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for NodeStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NodeStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            NodeStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NodeStream::Plain(s) => Pin::new(s).poll_flush(cx),
            NodeStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NodeStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            NodeStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Connect to `addr` within `connect_timeout` (the TLS handshake included), with
/// TCP_NODELAY and keepalive set, and authenticate when the config names credentials.
///
/// # Errors
/// [`ProxyError::Upstream`] when the node cannot be reached, [`ProxyError::UpstreamAuth`]
/// when it refuses the credentials.
pub(crate) async fn connect(
    addr: &str,
    cfg: &UpstreamConfig,
    tls: Option<&UpstreamTls>,
) -> Result<NodeStream, ProxyError> {
    let fail = |reason: String| ProxyError::Upstream {
        addr: addr.to_string(),
        reason,
    };
    let stream = match timeout(cfg.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(fail(format!("connect: {e}"))),
        Err(_) => {
            return Err(fail(format!(
                "connect timed out after {:?}",
                cfg.connect_timeout
            )))
        }
    };
    stream
        .set_nodelay(true)
        .map_err(|e| fail(format!("set_nodelay: {e}")))?;
    let sock = socket2::SockRef::from(&stream);
    let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(30));
    let _ = sock.set_tcp_keepalive(&keepalive);
    let mut stream = match tls {
        None => NodeStream::Plain(stream),
        Some(tls) => {
            let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let (connector, name) = tls.for_host(host).map_err(fail)?;
            match timeout(cfg.connect_timeout, connector.connect(name, stream)).await {
                Ok(Ok(s)) => NodeStream::Tls(Box::new(s)),
                Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
                    // The node's certificate did not verify: retrying will not help.
                    return Err(ProxyError::UpstreamTls {
                        addr: addr.to_string(),
                        reason: e.to_string(),
                    });
                }
                Ok(Err(e)) => return Err(fail(format!("TLS handshake: {e}"))),
                Err(_) => return Err(fail("TLS handshake timed out".into())),
            }
        }
    };
    if let Some(password) = &cfg.password {
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(user) = &cfg.username {
            args.push(user.as_bytes());
        }
        args.push(password.as_bytes());
        let mut buf = BytesMut::new();
        match query(&mut stream, &mut buf, &args, cfg.op_timeout).await? {
            Value::Simple(_) => {}
            Value::Error(e) => {
                return Err(ProxyError::UpstreamAuth {
                    addr: addr.to_string(),
                    reply: String::from_utf8_lossy(&e).into_owned(),
                })
            }
            other => return Err(fail(format!("unexpected AUTH reply {other:?}"))),
        }
    }
    Ok(stream)
}

/// Send `args` and expect `+OK`.
///
/// # Errors
/// [`ProxyError::Upstream`] for any other reply or a failure.
pub(crate) async fn expect_ok(
    stream: &mut NodeStream,
    args: &[&[u8]],
    deadline: Duration,
) -> Result<(), ProxyError> {
    let mut buf = BytesMut::new();
    match query(stream, &mut buf, args, deadline).await? {
        Value::Simple(s) if s == b"OK" => Ok(()),
        other => Err(ProxyError::Upstream {
            addr: peer_name(stream),
            reason: format!("{} refused: {other:?}", String::from_utf8_lossy(args[0])),
        }),
    }
}

/// Switch a fresh connection to `proto` with `HELLO`.
///
/// # Errors
/// [`ProxyError::Upstream`] when the node refuses (a node without RESP3) or fails.
pub(crate) async fn switch_protocol(
    stream: &mut NodeStream,
    proto: Protocol,
    deadline: Duration,
) -> Result<(), ProxyError> {
    let version = proto.version().to_string();
    let mut buf = BytesMut::new();
    match query(stream, &mut buf, &[b"HELLO", version.as_bytes()], deadline).await? {
        Value::Map(_) | Value::Array(_) => Ok(()),
        other => Err(ProxyError::Upstream {
            addr: peer_name(stream),
            reason: format!("HELLO {version} refused: {other:?}"),
        }),
    }
}

fn peer_name(stream: &NodeStream) -> String {
    match stream {
        NodeStream::Plain(s) => s.peer_addr(),
        NodeStream::Tls(s) => s.get_ref().0.peer_addr(),
    }
    .map(|a| a.to_string())
    .unwrap_or_default()
}

/// Send one command and read its whole reply within `deadline`.
///
/// # Errors
/// [`ProxyError::Upstream`] on I/O errors, a timeout, or bytes that are not RESP.
pub(crate) async fn query(
    stream: &mut NodeStream,
    buf: &mut BytesMut,
    args: &[&[u8]],
    deadline: Duration,
) -> Result<Value, ProxyError> {
    let peer = peer_name(stream);
    let fail = |reason: String| ProxyError::Upstream {
        addr: peer.clone(),
        reason,
    };
    // A node that expects TLS drops a plaintext connection at its first bytes.
    let hint = match stream {
        NodeStream::Plain(_) => {
            " (hint: a node that expects TLS closes plaintext connections like this; set \
             upstream.tls if it does)"
        }
        NodeStream::Tls(_) => "",
    };
    let exchange =
        async {
            let mut out = BytesMut::new();
            encode::command(&mut out, args);
            stream
                .write_all(&out)
                .await
                .map_err(|e| fail(format!("write: {e}")))?;
            stream
                .flush()
                .await
                .map_err(|e| fail(format!("write: {e}")))?;
            loop {
                match parse_value(buf) {
                    Ok(Some((value, used))) => {
                        let _ = buf.split_to(used);
                        return Ok(value);
                    }
                    Ok(None) => {}
                    // A TLS record (alert 0x15 or handshake 0x16, version 3.x): the node speaks
                    // TLS and slotgate did not.
                    Err(_) if matches!(&buf[..], [0x15 | 0x16, 0x03, ..]) => return Err(fail(
                        "the node answered with TLS (hint: set upstream.tls to speak TLS to the \
                         nodes)"
                            .into(),
                    )),
                    Err(e) => return Err(fail(format!("invalid reply: {e}"))),
                }
                let n = stream
                    .read_buf(buf)
                    .await
                    .map_err(|e| fail(format!("read: {e}{hint}")))?;
                if n == 0 {
                    return Err(fail(format!("connection closed{hint}")));
                }
            }
        };
    match timeout(deadline, exchange).await {
        Ok(r) => r,
        Err(_) => Err(fail(format!("no reply within {deadline:?}"))),
    }
}
