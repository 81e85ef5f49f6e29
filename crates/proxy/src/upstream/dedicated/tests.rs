//! The dedicated pool against a scripted fake node: the per-node cap, reuse of a connection
//! given back clean, and no reuse of one dropped mid-conversation.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::testing::{fake_node, Answer};

fn pool(node: &str, cap: usize) -> Rc<DedicatedPool> {
    let cfg = UpstreamConfig {
        seeds: vec![node.to_string()],
        max_dedicated_per_node: cap,
        connect_timeout: Duration::from_secs(1),
        ..UpstreamConfig::default()
    };
    let metrics = Arc::new(Metrics::new(true));
    let topology = Arc::new(Topology::new(cfg.clone(), Arc::clone(&metrics), None, None));
    Rc::new(DedicatedPool::new(Arc::new(cfg), topology, metrics))
}

fn local<F: std::future::Future<Output = ()>>(test: impl FnOnce() -> F) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, test());
}

#[test]
fn the_cap_refuses_one_more_and_a_returned_connection_is_reused() {
    local(|| async {
        let node = fake_node(|_| Answer::Reply(b"+PONG\r\n".to_vec())).await;
        let addr = NodeAddr::new(&node.addr);
        let pool = pool(&node.addr, 1);
        let mut first = pool
            .take(&addr, Dialect::RESP2)
            .await
            .expect("a connection");
        let reply = first
            .conn()
            .request(b"*1\r\n$4\r\nPING\r\n", false)
            .await
            .unwrap();
        assert_eq!(&reply.raw[..], b"+PONG\r\n");
        // The cap is one: a second connection to the node is refused with the documented reply.
        let refused = pool
            .take(&addr, Dialect::RESP2)
            .await
            .err()
            .expect("refused");
        assert_eq!(
            refused,
            replies::dedicated_limit(&node.addr, 1),
            "{}",
            String::from_utf8_lossy(&refused)
        );
        // Given back clean, the same connection serves the next command.
        first.give_back();
        let mut again = pool.take(&addr, Dialect::RESP2).await.expect("reused");
        again
            .conn()
            .request(b"*1\r\n$4\r\nPING\r\n", false)
            .await
            .unwrap();
        again.give_back();
        let seen = node.seen.borrow();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].0, seen[1].0, "one connection, reused");
    });
}

#[test]
fn a_lease_dropped_mid_conversation_is_closed_not_reused() {
    local(|| async {
        let node = fake_node(|args| match args[0].as_str() {
            "BLPOP" => Answer::Silence,
            _ => Answer::Reply(b"+PONG\r\n".to_vec()),
        })
        .await;
        let addr = NodeAddr::new(&node.addr);
        let pool = pool(&node.addr, 1);
        {
            let mut lease = pool.take(&addr, Dialect::RESP2).await.unwrap();
            lease
                .conn()
                .send(b"*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n")
                .await
                .unwrap();
            // Dropped while the node still owes a reply (a client that went away).
        }
        // Its place under the cap is free again, and the next lease is a new connection.
        let mut next = pool
            .take(&addr, Dialect::RESP2)
            .await
            .expect("within the cap");
        next.conn()
            .request(b"*1\r\n$4\r\nPING\r\n", false)
            .await
            .unwrap();
        let seen = node.seen.borrow();
        assert_eq!(seen.len(), 2);
        assert_ne!(seen[0].0, seen[1].0, "a fresh connection");
    });
}

#[test]
fn a_refused_asking_is_the_reply_and_both_replies_are_read() {
    local(|| async {
        let node = fake_node(|args| match args[0].as_str() {
            "ASKING" => Answer::Reply(b"-ERR no\r\n".to_vec()),
            _ => Answer::Reply(b":1\r\n".to_vec()),
        })
        .await;
        let addr = NodeAddr::new(&node.addr);
        let pool = pool(&node.addr, 1);
        let mut lease = pool.take(&addr, Dialect::RESP2).await.unwrap();
        let reply = lease
            .conn()
            .request(b"*1\r\n$1\r\nX\r\n", true)
            .await
            .unwrap();
        assert_eq!(&reply.raw[..], b"-ERR no\r\n");
        // The connection stayed in step: the next request gets its own reply.
        let reply = lease
            .conn()
            .request(b"*1\r\n$1\r\nY\r\n", false)
            .await
            .unwrap();
        assert_eq!(&reply.raw[..], b":1\r\n");
    });
}
