//! A minimal request/response client for the proxy's own conversations with nodes: the
//! `AUTH` handshake of every upstream connection and the topology refresher's
//! `CLUSTER SLOTS` / `INFO`. Not used for client traffic.

use std::time::Duration;

use bytes::BytesMut;
use slotgate_resp::encode;
use slotgate_resp::value::{parse_value, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::config::UpstreamConfig;
use crate::error::ProxyError;

/// Connect to `addr` within `connect_timeout`, with TCP_NODELAY and keepalive set, and
/// authenticate when the config names credentials.
///
/// # Errors
/// [`ProxyError::Upstream`] when the node cannot be reached, [`ProxyError::UpstreamAuth`]
/// when it refuses the credentials.
pub(crate) async fn connect(addr: &str, cfg: &UpstreamConfig) -> Result<TcpStream, ProxyError> {
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
    let mut stream = stream;
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

/// Send one command and read its whole reply within `deadline`.
///
/// # Errors
/// [`ProxyError::Upstream`] on I/O errors, a timeout, or bytes that are not RESP.
pub(crate) async fn query(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    args: &[&[u8]],
    deadline: Duration,
) -> Result<Value, ProxyError> {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let fail = |reason: String| ProxyError::Upstream {
        addr: peer.clone(),
        reason,
    };
    let exchange = async {
        let mut out = BytesMut::new();
        encode::command(&mut out, args);
        stream
            .write_all(&out)
            .await
            .map_err(|e| fail(format!("write: {e}")))?;
        loop {
            match parse_value(buf) {
                Ok(Some((value, used))) => {
                    let _ = buf.split_to(used);
                    return Ok(value);
                }
                Ok(None) => {}
                Err(e) => return Err(fail(format!("invalid reply: {e}"))),
            }
            let n = stream
                .read_buf(buf)
                .await
                .map_err(|e| fail(format!("read: {e}")))?;
            if n == 0 {
                return Err(fail("connection closed".into()));
            }
        }
    };
    match timeout(deadline, exchange).await {
        Ok(r) => r,
        Err(_) => Err(fail(format!("no reply within {deadline:?}"))),
    }
}
