//! Cluster-aware clients pointed at slotgate see a one-node cluster — slotgate itself, owning
//! every slot — so they keep all their traffic on slotgate.

use std::process::Command;

use slotgate_tests::raw::RawConn;
use slotgate_tests::{free_port, shared_cluster, slotgate_config, Slotgate};

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

#[test]
fn cluster_topology_commands_name_only_slotgate() {
    let proxy = Slotgate::spawn(&slotgate_config(&shared_cluster().seeds(), free_port()));
    let port = proxy.port();
    let mut raw = RawConn::connect(port);

    raw.send_command(&[b"CLUSTER", b"MYID"]);
    let id_line = raw.read_reply().unwrap();
    let id = String::from_utf8(id_line).unwrap();
    let id = id.lines().nth(1).unwrap().to_string();
    assert_eq!(id.len(), 40);

    raw.roundtrip(
        &[b"CLUSTER", b"SLOTS"],
        format!(
            "*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n{}:{port}\r\n{}*0\r\n",
            bulk("127.0.0.1"),
            bulk(&id)
        )
        .as_bytes(),
    );
    raw.send_command(&[b"CLUSTER", b"NODES"]);
    let nodes = String::from_utf8(raw.read_reply().unwrap()).unwrap();
    assert!(
        nodes.contains(&format!(
            "{id} 127.0.0.1:{port}@{port} myself,master - 0 0 1 connected 0-16383"
        )),
        "{nodes}"
    );
    raw.send_command(&[b"CLUSTER", b"SHARDS"]);
    let shards = String::from_utf8(raw.read_reply().unwrap()).unwrap();
    assert!(
        shards.starts_with(
            "*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n*14\r\n"
        ),
        "{shards:?}"
    );
    assert!(
        shards.contains(&bulk(&id)) && shards.contains(&format!("$4\r\nport\r\n:{port}\r\n")),
        "{shards:?}"
    );
    raw.send_command(&[b"CLUSTER", b"INFO"]);
    let info = String::from_utf8(raw.read_reply().unwrap()).unwrap();
    assert!(
        info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:1"),
        "{info}"
    );
}

#[test]
fn redis_cli_in_cluster_mode_works_through_slotgate_alone() {
    let proxy = Slotgate::spawn(&slotgate_config(&shared_cluster().seeds(), free_port()));
    let port = proxy.port().to_string();
    // Keys on every shard; `-c` would follow a MOVED elsewhere, and slotgate never sends one.
    for i in 0..30 {
        let key = format!("cm:{i}");
        let set = Command::new("redis-cli")
            .args(["-c", "-p", &port, "SET", &key, &i.to_string()])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&set.stdout).trim(), "OK");
        let get = Command::new("redis-cli")
            .args(["-c", "-p", &port, "GET", &key])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), i.to_string());
    }
}
