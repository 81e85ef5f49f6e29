//! Cluster-aware clients pointed at slotgate see a one-node cluster — slotgate itself, owning
//! every slot — so they keep all their traffic on slotgate.

use std::process::Command;
use std::time::Duration;

use slotgate_tests::raw::bulk_text as bulk;
use slotgate_tests::raw::RawConn;
use slotgate_tests::{
    assert_eventually, shared_cluster, ClusterOptions, ProxyConfig, RedisCluster,
};

#[test]
fn cluster_topology_commands_name_only_slotgate() {
    let proxy = ProxyConfig::new(&shared_cluster().seeds()).spawn();
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
    let proxy = ProxyConfig::new(&shared_cluster().seeds()).spawn();
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

/// `total_connections_received` of every node of `cluster`, in `nodes()` order. Each call
/// opens one connection per node itself.
fn connections_received(cluster: &RedisCluster) -> Vec<u64> {
    cluster
        .nodes()
        .iter()
        .map(|&port| {
            let stats = cluster.cli(port, &["INFO", "stats"]);
            stats
                .lines()
                .find_map(|l| l.strip_prefix("total_connections_received:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("node {port}: no total_connections_received"))
        })
        .collect()
}

/// SET/GET of 1,000 keys over every shard, MSET/MGET within one slot, and a pipeline,
/// through a redis-rs cluster client that knows only `initial`.
async fn cluster_client_workload(initial: String) {
    let client = redis::cluster::ClusterClient::new(vec![initial]).unwrap();
    let mut con = client.get_async_connection().await.unwrap();
    for i in 0..1000 {
        let _: () = redis::cmd("SET")
            .arg(format!("cm:rs:{i}"))
            .arg(i)
            .query_async(&mut con)
            .await
            .unwrap();
    }
    for i in 0..1000 {
        let got: i64 = redis::cmd("GET")
            .arg(format!("cm:rs:{i}"))
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(got, i);
    }
    let _: () = redis::cmd("MSET")
        .arg(&["{cm:rs}a", "1", "{cm:rs}b", "2", "{cm:rs}c", "3"])
        .query_async(&mut con)
        .await
        .unwrap();
    let got: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&["{cm:rs}a", "{cm:rs}b", "{cm:rs}missing", "{cm:rs}c"])
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![Some("1".into()), Some("2".into()), None, Some("3".into())]
    );
    let got: (String, i64, i64, String) = redis::pipe()
        .cmd("DEL")
        .arg("{cm:rs}n")
        .ignore()
        .cmd("SET")
        .arg("{cm:rs}p")
        .arg("x")
        .cmd("INCRBY")
        .arg("{cm:rs}n")
        .arg(5)
        .cmd("INCRBY")
        .arg("{cm:rs}n")
        .arg(2)
        .cmd("GET")
        .arg("{cm:rs}p")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(got, ("OK".into(), 5, 7, "x".into()));
}

#[test]
fn a_redis_rs_cluster_client_works_through_slotgate_alone() {
    // A cluster of its own: no other test's connections reach its nodes.
    let cluster = RedisCluster::start(ClusterOptions::default());
    // One worker, and no periodic topology refresh during the run: slotgate itself then
    // opens no connection to a node once its upstream connections are up.
    let proxy = ProxyConfig::new(&cluster.seeds())
        .admin()
        .refresh_interval(Duration::from_secs(3600))
        .workers(1)
        .spawn();
    let admin = proxy.admin_addr().unwrap();
    assert_eventually!(
        slotgate_tests::admin::http_get(admin, "/readyz").is_ok_and(|(code, _)| code == 200)
            && proxy.upstream_connections("multiplexed") >= 3.0,
        Duration::from_secs(10),
        "slotgate not connected to every primary"
    );
    let accepted = || {
        proxy.scrape().sum(
            "slotgate_client_connections_total",
            &["result=\"accepted\""],
        )
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let (before, accepted_before) = (connections_received(&cluster), accepted());
    runtime.block_on(cluster_client_workload(proxy.url()));
    let after = connections_received(&cluster);
    // Every node saw exactly one new connection: the one that read its stats above.
    for ((port, b), a) in cluster.nodes().iter().zip(&before).zip(&after) {
        assert_eq!(
            a - b,
            1,
            "node {port} accepted connections other than the stats probe's"
        );
    }
    assert!(
        accepted() > accepted_before,
        "the cluster client never connected to slotgate"
    );
    // The keys really are spread over every shard behind it.
    let owners = cluster.slot_owners();
    let shards: std::collections::BTreeSet<u16> = (0..1000)
        .map(|i| owners[slotgate_cluster::slot(format!("cm:rs:{i}").as_bytes()) as usize])
        .collect();
    assert_eq!(shards.len(), cluster.primaries().len());

    // The measure does see a cluster client that connects to nodes itself.
    let before = connections_received(&cluster);
    let direct = format!("redis://127.0.0.1:{}/", cluster.primaries()[0]);
    runtime.block_on(cluster_client_workload(direct));
    let after = connections_received(&cluster);
    assert!(
        before.iter().zip(&after).any(|(b, a)| a - b >= 2),
        "a direct cluster client went unnoticed: {before:?} -> {after:?}"
    );
}

#[test]
fn bare_command_returns_the_whole_table_as_cluster_clients_expect() {
    // redis-py's RedisCluster sends a bare COMMAND when it is constructed and gives up if it
    // fails; Redis answers the whole command table.
    let proxy = ProxyConfig::new(&shared_cluster().seeds()).spawn();
    let mut raw = RawConn::connect(proxy.port());
    raw.send_command(&[b"COMMAND"]);
    let reply = raw.read_reply().expect("a reply to COMMAND");
    let text = String::from_utf8_lossy(&reply);
    let count: usize = text[1..text.find("\r\n").unwrap()].parse().unwrap();
    assert!(
        text.starts_with('*') && count > 200,
        "{}",
        &text[..text.len().min(200)]
    );
    assert!(text.contains("\r\nget\r\n") && text.contains("\r\nmset\r\n"));
    // The same count COMMAND COUNT gives, on the same connection.
    raw.roundtrip(&[b"COMMAND", b"COUNT"], format!(":{count}\r\n").as_bytes());
    // Other containers still need their subcommand.
    raw.roundtrip(
        &[b"CLIENT"],
        b"-ERR wrong number of arguments for 'client' command\r\n",
    );
    // Inside MULTI it is queued and answered by EXEC like any command the node answers: the
    // node's own table there, which also lists what slotgate refuses (docs/compatibility.md).
    let mut c = proxy.connection();
    let (table,): (Vec<redis::Value>,) =
        redis::pipe().atomic().cmd("COMMAND").query(&mut c).unwrap();
    assert!(table.len() > count, "{} <= {count}", table.len());
}
