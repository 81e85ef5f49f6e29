//! Loopback ports for test processes, always handed out by the OS, never fixed.
//!
//! A port is found by binding `127.0.0.1:0`, reading the port and dropping the socket. The
//! same port is never handed out twice by one test process, so two tests running in parallel
//! threads cannot both be told to use it before either binds.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};

/// Offset Redis Cluster adds to a node's port for its cluster bus port.
pub const CLUSTER_BUS_OFFSET: u16 = 10_000;

/// Ports already handed out by this process.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Whether `port` can be bound on 127.0.0.1 right now.
fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Asks the OS for ports until it gives one, `P`, that this process has not handed out yet
/// and for which `also(P)` names further ports that are free and not handed out either (they
/// are then reserved with it).
fn pick_port(what: &str, also: impl Fn(u16) -> Option<Vec<u16>>) -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        drop(listener);
        let Some(extra) = also(port) else { continue };
        if !extra.iter().all(|&p| bindable(p)) {
            continue;
        }
        let mut taken = handed_out().lock().unwrap_or_else(|e| e.into_inner());
        if taken.contains(&port) || extra.iter().any(|p| taken.contains(p)) {
            continue;
        }
        taken.insert(port);
        taken.extend(extra);
        return port;
    }
    panic!("could not find a free {what} on 127.0.0.1 after 1000 tries");
}

/// A free TCP port on 127.0.0.1, given by the OS (bind port 0, read it, drop the socket).
///
/// # Panics
/// If the OS keeps refusing to give one.
pub fn free_port() -> u16 {
    pick_port("port", |_| Some(Vec::new()))
}

/// A free port `P` on 127.0.0.1 whose cluster bus port `P + 10000` is free as well.
///
/// # Panics
/// If no such port turns up after many tries.
pub fn free_cluster_port() -> u16 {
    pick_port("cluster port (port and port+10000)", |port| {
        port.checked_add(CLUSTER_BUS_OFFSET).map(|bus| vec![bus])
    })
}
