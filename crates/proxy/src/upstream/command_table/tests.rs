use super::*;

fn b(s: &str) -> Value {
    Value::Bulk(s.as_bytes().to_vec())
}

fn s(s: &str) -> Value {
    Value::Simple(s.as_bytes().to_vec())
}

fn arr(items: Vec<Value>) -> Value {
    Value::Array(items)
}

/// A key spec as Redis 7+ writes it in RESP2: index 1, a range of one key.
fn index_spec(flags: &[&str]) -> Value {
    arr(vec![
        b("flags"),
        arr(flags.iter().map(|f| s(f)).collect()),
        b("begin_search"),
        arr(vec![
            b("type"),
            b("index"),
            b("spec"),
            arr(vec![b("index"), Value::Integer(1)]),
        ]),
        b("find_keys"),
        arr(vec![
            b("type"),
            b("range"),
            b("spec"),
            arr(vec![
                b("lastkey"),
                Value::Integer(0),
                b("keystep"),
                Value::Integer(1),
                b("limit"),
                Value::Integer(0),
            ]),
        ]),
    ])
}

fn entry(
    name: &str,
    arity: i64,
    flags: &[&str],
    cats: &[&str],
    tips: &[&str],
    specs: Vec<Value>,
) -> Value {
    arr(vec![
        b(name),
        Value::Integer(arity),
        arr(flags.iter().map(|f| s(f)).collect()),
        Value::Integer(i64::from(!specs.is_empty())),
        Value::Integer(i64::from(!specs.is_empty())),
        Value::Integer(i64::from(!specs.is_empty())),
        arr(cats.iter().map(|c| s(c)).collect()),
        arr(tips.iter().map(|t| s(t)).collect()),
        arr(specs),
        arr(vec![]),
    ])
}

fn hexpire() -> Value {
    entry(
        "hexpire",
        -6,
        &["write", "fast"],
        &["@write", "@hash", "@fast"],
        &[],
        vec![index_spec(&["RW", "UPDATE"])],
    )
}

#[test]
fn a_keyed_command_every_primary_has_is_learned_as_one_slot() {
    let node = arr(vec![
        hexpire(),
        entry(
            "get",
            2,
            &["readonly"],
            &["@read"],
            &[],
            vec![index_spec(&["RO"])],
        ),
    ]);
    let learned = Learned::from_replies(&[node.clone(), node]);
    assert_eq!(learned.len(), 1, "GET is slotgate's own");
    let cmd = learned.get("hexpire").expect("learned");
    assert_eq!(cmd.family, Family::Single);
    assert!(cmd.arity_ok(6) && !cmd.arity_ok(5));
    assert!(cmd.has_flag(flag::WRITE));
    assert!(cmd.in_category(Category::Hash));
    let args: [&[u8]; 6] = [b"HEXPIRE", b"app:1", b"10", b"FIELDS", b"1", b"f"];
    assert_eq!(cmd.sole_routing_key(&args[..]), Some(&b"app:1"[..]));
    assert_eq!(cmd.key_specs[0].flags & key_flag::RW, key_flag::RW);
}

#[test]
fn what_some_primary_lacks_or_describes_otherwise_is_not_learned() {
    let full = arr(vec![hexpire()]);
    assert!(Learned::from_replies(&[full.clone(), arr(vec![])]).is_empty());
    let other = arr(vec![entry(
        "hexpire",
        -5,
        &["write"],
        &["@write"],
        &[],
        vec![index_spec(&["RW"])],
    )]);
    assert!(Learned::from_replies(&[full, other]).is_empty());
}

#[test]
fn keyless_commands_follow_their_tips_and_unusable_keys_are_refused() {
    let node = arr(vec![
        entry("keylessnew", 4, &["blocking"], &["@slow"], &[], vec![]),
        entry(
            "fanout",
            1,
            &["readonly"],
            &["@slow"],
            &["request_policy:all_shards", "response_policy:agg_sum"],
            vec![],
        ),
        entry(
            "oddkeys",
            -2,
            &["write", "movablekeys"],
            &["@write"],
            &[],
            vec![arr(vec![
                b("flags"),
                arr(vec![]),
                b("begin_search"),
                arr(vec![b("type"), b("unknown"), b("spec"), arr(vec![])]),
            ])],
        ),
        entry("listen", -2, &["pubsub"], &["@pubsub"], &[], vec![]),
    ]);
    let learned = Learned::from_replies(&[node]);
    assert_eq!(
        learned.get("keylessnew").map(|c| c.family),
        Some(Family::Keyless)
    );
    assert_eq!(
        learned.get("fanout").map(|c| c.family),
        Some(Family::AllShards(MergeKind::SumInteger))
    );
    assert_eq!(
        learned.get("oddkeys").map(|c| c.family),
        Some(Family::Unsupported)
    );
    assert_eq!(
        learned.get("listen").map(|c| c.family),
        Some(Family::Unsupported)
    );
}

#[test]
fn a_new_subcommand_of_a_known_container_is_learned() {
    let capa = entry(
        "client|capa",
        -3,
        &["noscript", "loading", "stale"],
        &["@slow", "@connection"],
        &[],
        vec![],
    );
    let client = arr(vec![
        b("client"),
        Value::Integer(-2),
        arr(vec![]),
        Value::Integer(0),
        Value::Integer(0),
        Value::Integer(0),
        arr(vec![]),
        arr(vec![]),
        arr(vec![]),
        arr(vec![capa, entry("client|id", 2, &[], &[], &[], vec![])]),
    ]);
    let learned = Learned::from_replies(&[arr(vec![client])]);
    // Learned, and answered by slotgate: never set on a connection clients share.
    assert_eq!(
        learned.get("client|capa").map(|c| c.family),
        Some(Family::Local)
    );
    assert!(
        learned.get("client|id").is_none(),
        "CLIENT ID is slotgate's own"
    );
}

#[test]
fn a_new_container_carries_its_subcommands_and_routes_by_them() {
    let get = entry(
        "newlog|get",
        -3,
        &["admin"],
        &["@admin", "@slow"],
        &[],
        vec![],
    );
    let touch = entry(
        "newlog|touch",
        3,
        &["write"],
        &["@write"],
        &[],
        vec![index_spec(&["RW", "UPDATE"])],
    );
    let container = arr(vec![
        b("newlog"),
        Value::Integer(-2),
        arr(vec![]),
        Value::Integer(0),
        Value::Integer(0),
        Value::Integer(0),
        arr(vec![s("@slow")]),
        arr(vec![]),
        arr(vec![]),
        arr(vec![touch, get]),
    ]);
    let learned = Learned::from_replies(&[arr(vec![container])]);
    let top = learned.get("newlog").expect("learned");
    assert!(top.is_container());
    let names: Vec<&str> = top.subcommands.iter().map(|c| c.name).collect();
    assert_eq!(names, ["newlog|get", "newlog|touch"], "sorted by name");
    assert_eq!(
        learned.get("newlog|touch").map(|c| c.family),
        Some(Family::Single)
    );
    assert_eq!(
        learned.get("newlog|get").map(|c| c.family),
        Some(Family::Keyless)
    );
}

#[test]
fn a_module_command_without_keys_or_tips_is_refused_in_a_cluster_only() {
    let search = entry(
        "ft.search",
        -3,
        &["readonly", "module"],
        &["@search"],
        &[],
        vec![],
    );
    let json = entry(
        "json.get",
        -2,
        &["readonly", "module"],
        &["@read"],
        &[],
        vec![index_spec(&["RO", "ACCESS"])],
    );
    let node = arr(vec![search, json]);
    let family = |learned: &Learned, name: &str| learned.get(name).map(|c| c.family);
    let cluster = Learned::from_servers(std::slice::from_ref(&node), false);
    assert_eq!(family(&cluster, "ft.search"), Some(Family::Unsupported));
    assert_eq!(family(&cluster, "json.get"), Some(Family::Single));
    let one = Learned::from_servers(&[node], true);
    assert_eq!(family(&one, "ft.search"), Some(Family::Keyless));
    assert_eq!(family(&one, "json.get"), Some(Family::Single));
}

/// docs/compatibility-servers.md is generated from what each tested server newer than Redis
/// 7.0 reports in `COMMAND` (recorded in `servers/` by the learned_commands end-to-end
/// suite), so it cannot drift: this fails when the committed file differs. Regenerate with
/// `SLOTGATE_UPDATE_DOCS=1 cargo test -p slotgate-proxy --lib compatibility_servers`.
#[test]
fn compatibility_servers_doc_is_current() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = format!("{root}/src/upstream/command_table/servers");
    let mut servers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".resp").map(str::to_string)
        })
        .collect();
    servers.sort();
    let mut doc = String::from(
        "# Commands of newer servers\n\n\
         Generated from the `COMMAND` replies of the tested servers newer than Redis 7.0 \
         (recorded by the end-to-end suite `learned_commands`); do not edit. For every \
         command or subcommand the server has and Redis 7.0 lacks: what slotgate does with \
         it in cluster mode. *Built in* commands are in slotgate's own table \
         ([compatibility.md](compatibility.md) describes each); the others are learned from \
         the servers at start-up ([compatibility.md](compatibility.md), Commands learned from \
         the servers).\n",
    );
    for server in &servers {
        let resp = std::fs::read(format!("{dir}/{server}.resp")).unwrap();
        let (reply, _) = slotgate_resp::parse_value(&resp).unwrap().unwrap();
        let learned = describe_all(&reply);
        let names = std::fs::read_to_string(format!("{dir}/{server}.new")).unwrap();
        let (served, refused): (Vec<_>, Vec<_>) = names
            .lines()
            .map(|name| {
                let what = match learned.get(name) {
                    _ if learned.keys().any(|n| n.starts_with(&format!("{name}|"))) => {
                        "served through its subcommands (listed)".to_string()
                    }
                    Some(desc) => routing(name, desc, false).1.to_string(),
                    None => match commands::lookup(&name.split('|').collect::<Vec<_>>()[..]) {
                        Some(c) if c.family == Family::Unsupported => {
                            "built in: refused (compatibility.md)".to_string()
                        }
                        Some(_) => "built in (compatibility.md describes it)".to_string(),
                        None => "unknown".to_string(),
                    },
                };
                (name.to_string(), what)
            })
            .partition(|(_, what)| !what.contains("refused"));
        let title = server.replacen('-', " ", 1);
        let mut title = title.chars();
        let title: String = title
            .next()
            .map(|c| c.to_ascii_uppercase())
            .into_iter()
            .chain(title)
            .collect();
        doc.push_str(&format!(
            "\n## {title}\n\n{} commands and subcommands Redis 7.0 lacks: {} served, {} refused.\n\n\
             | command | through slotgate |\n|---|---|\n",
            served.len() + refused.len(),
            served.len(),
            refused.len()
        ));
        for (name, what) in served.iter().chain(&refused) {
            doc.push_str(&format!(
                "| `{}` | {what} |\n",
                name.to_ascii_uppercase().replace('|', " ")
            ));
        }
    }
    let path = format!("{root}/../../docs/compatibility-servers.md");
    if std::env::var_os("SLOTGATE_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &doc).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == doc,
        "docs/compatibility-servers.md is stale: SLOTGATE_UPDATE_DOCS=1 cargo test -p \
         slotgate-proxy --lib compatibility_servers"
    );
}
