use crate::*;

#[test]
fn case_insensitive_lookup() {
    for name in [&b"get"[..], b"GET", b"gEt"] {
        assert_eq!(lookup_name(name).unwrap().name, "get");
    }
    assert_eq!(
        lookup(&["ZunionStore", "d", "1", "a"]).unwrap().name,
        "zunionstore"
    );
    assert_eq!(
        lookup_name(b"georadiusbymember_ro").unwrap().name,
        "georadiusbymember_ro"
    );
    assert_eq!(
        lookup_name(b"RESTORE-ASKING").unwrap().name,
        "restore-asking"
    );
}

#[test]
fn unknown_names() {
    assert!(lookup_name(b"").is_none());
    assert!(lookup_name(b"nosuchcommand").is_none());
    assert!(lookup_name(b"ge").is_none());
    assert!(lookup_name(b"gett").is_none());
    assert!(lookup_name(&[b'g'; 300]).is_none());
    assert!(lookup_name(b"client|setname").is_none());
    assert!(lookup_name(b"get\0").is_none());
    assert!(lookup_name(b"\0").is_none());
    assert!(lookup(&["client", "setname\0"]).unwrap().name == "client");
    assert!(lookup_name(b"count-failure-reports-and-more-than-24").is_none());
    assert!(lookup_name("gét".as_bytes()).is_none());
    let empty: [&[u8]; 0] = [];
    assert!(lookup(&empty[..]).is_none());
}

#[test]
fn subcommands() {
    assert_eq!(
        lookup(&["CLIENT", "SETNAME", "x"]).unwrap().name,
        "client|setname"
    );
    assert_eq!(
        lookup(&["client", "setname", "x"]).unwrap().name,
        "client|setname"
    );
    assert_eq!(
        lookup(&["Config", "Get", "save"]).unwrap().name,
        "config|get"
    );
    assert_eq!(lookup(&["CONFIG", "get"]).unwrap().family, Family::Local);
    assert_eq!(
        lookup(&["client", "no-evict", "on"]).unwrap().name,
        "client|no-evict"
    );
    // Redis 7.2 subcommands from gen/extra-commands.json.
    let setinfo = lookup(&["CLIENT", "SETINFO", "LIB-NAME", "x"]).unwrap();
    assert_eq!(
        (setinfo.name, setinfo.family),
        ("client|setinfo", Family::Local)
    );
    assert_eq!(
        lookup(&["client", "no-touch", "on"]).unwrap().family,
        Family::Local
    );
    // Unknown subcommand or none: the container itself.
    assert_eq!(lookup(&["CLIENT", "bogus"]).unwrap().name, "client");
    assert_eq!(lookup(&["CLIENT"]).unwrap().name, "client");
    assert_eq!(lookup(&["COMMAND"]).unwrap().name, "command");
    // Only containers look at argv[1].
    assert_eq!(lookup(&["GET", "info"]).unwrap().name, "get");
    assert!(lookup_name(b"client").unwrap().is_container());
}

#[test]
fn arity() {
    let get = lookup_name(b"get").unwrap();
    assert_eq!(get.arity, 2);
    assert!(get.arity_ok(2));
    assert!(!get.arity_ok(1));
    assert!(!get.arity_ok(3));
    let mset = lookup_name(b"mset").unwrap();
    assert_eq!(mset.arity, -3);
    assert!(!mset.arity_ok(2));
    assert!(mset.arity_ok(3));
    assert!(mset.arity_ok(1001));
    let setname = lookup(&["client", "setname", "x"]).unwrap();
    assert!(setname.arity_ok(3));
    assert!(!setname.arity_ok(2));
}

#[test]
fn flags_and_categories() {
    let get = lookup_name(b"get").unwrap();
    assert!(get.has_flag(flag::READONLY | flag::FAST));
    assert!(!get.has_flag(flag::WRITE));
    assert!(get.in_category(Category::Read));
    assert!(get.in_category(Category::String));
    assert!(!get.in_category(Category::Write));
    let flushall = lookup_name(b"flushall").unwrap();
    assert!(flushall.in_category(Category::Dangerous));
    assert!(lookup_name(b"auth").unwrap().has_flag(flag::NO_AUTH));
    assert!(lookup_name(b"eval").unwrap().has_flag(flag::MOVABLE_KEYS));
    assert!(lookup_name(b"blpop")
        .unwrap()
        .in_category(Category::Blocking));
}

#[test]
fn category_names() {
    for c in Category::ALL {
        assert_eq!(Category::from_name(c.name()), Some(c));
        assert_eq!(Category::from_name(&c.name().to_uppercase()), Some(c));
        assert_eq!(c.bit(), 1 << c as u32);
    }
    assert_eq!(Category::from_name("SortedSet"), Some(Category::SortedSet));
    assert_eq!(Category::from_name("@read"), None);
    assert_eq!(Category::from_name("nope"), None);
}

#[test]
fn dense_indices() {
    let mut seen = vec![false; COMMAND_COUNT];
    let mut count = 0;
    for c in all() {
        for c in std::iter::once(c).chain(c.subcommands) {
            assert!(!seen[c.index as usize], "{} index reused", c.name);
            seen[c.index as usize] = true;
            assert!(std::ptr::eq(by_index(c.index), c));
            count += 1;
        }
    }
    assert_eq!(count, COMMAND_COUNT);
    assert!(all().windows(2).all(|w| w[0].name < w[1].name));
}

#[test]
fn families() {
    let fam = |args: &[&str]| lookup(args).unwrap().family;
    assert_eq!(fam(&["get", "k"]), Family::Single);
    assert_eq!(fam(&["mget", "a"]), Family::Split(SplitKind::Mget));
    assert_eq!(fam(&["mset", "a", "1"]), Family::Split(SplitKind::Mset));
    assert_eq!(fam(&["del", "a"]), Family::Split(SplitKind::SumInteger));
    assert_eq!(fam(&["msetnx", "a", "1"]), Family::Single);
    assert_eq!(fam(&["dbsize"]), Family::AllShards(MergeKind::SumInteger));
    assert_eq!(fam(&["scan", "0"]), Family::AllShards(MergeKind::Scan));
    assert_eq!(
        fam(&["script", "exists", "x"]),
        Family::AllShards(MergeKind::AndArrays)
    );
    assert_eq!(
        fam(&["pubsub", "numsub"]),
        Family::AllShards(MergeKind::SumPairs)
    );
    assert_eq!(fam(&["multi"]), Family::Transaction);
    assert_eq!(fam(&["blpop", "a", "0"]), Family::Blocking);
    assert_eq!(fam(&["xread", "streams", "a", "0"]), Family::Single);
    assert_eq!(fam(&["ssubscribe", "a"]), Family::PubSub);
    assert_eq!(fam(&["spublish", "a", "m"]), Family::Single);
    assert_eq!(fam(&["publish", "a", "m"]), Family::Keyless);
    assert_eq!(fam(&["ping"]), Family::Local);
    assert_eq!(fam(&["cluster", "slots"]), Family::Local);
    assert_eq!(
        fam(&["cluster", "setslot", "1", "stable"]),
        Family::Unsupported
    );
    assert_eq!(fam(&["monitor"]), Family::Unsupported);
    assert_eq!(fam(&["time"]), Family::Keyless);
    assert_eq!(fam(&["eval", "s", "0"]), Family::Single);
}

#[test]
fn blocking_calls() {
    let blocking = |args: &[&str]| is_blocking_call(lookup(args).unwrap(), args);
    assert!(blocking(&["BLPOP", "a", "0"]));
    assert!(blocking(&["WAIT", "1", "0"]));
    assert!(!blocking(&["LPOP", "a"]));
    assert!(blocking(&["XREAD", "BLOCK", "0", "STREAMS", "a", "$"]));
    assert!(blocking(&[
        "xread", "count", "1", "block", "10", "streams", "a", "$"
    ]));
    assert!(!blocking(&["XREAD", "STREAMS", "block", "0"]));
    assert!(!blocking(&["XREAD", "COUNT", "block", "STREAMS", "a", "0"]));
    assert!(blocking(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "BLOCK",
        "0",
        "STREAMS",
        "a",
        ">"
    ]));
    assert!(!blocking(&[
        "XREADGROUP",
        "GROUP",
        "block",
        "c",
        "STREAMS",
        "a",
        ">"
    ]));
}

#[test]
fn lookup_newer_client_subcommands() {
    for (sub, argc) in [
        ("setinfo", 4),
        ("SETINFO", 4),
        ("no-touch", 3),
        ("setname", 3),
    ] {
        let args: [&[u8]; 4] = [b"client", sub.as_bytes(), b"lib-name", b"x"];
        let cmd = crate::lookup(&args[..argc]).unwrap();
        assert_eq!(cmd.name, format!("client|{}", sub.to_ascii_lowercase()));
        assert!(cmd.arity_ok(argc), "{sub} arity {}", cmd.arity);
    }
}

/// A `LookupCache` finds what `lookup` finds, line after line, whatever came before:
/// repeats, case changes, containers (never remembered), unknown names, long names.
#[test]
fn lookup_cache_agrees_with_lookup() {
    let lines: Vec<Vec<&str>> = vec![
        vec!["GET", "k"],
        vec!["GET", "k"],
        vec!["get", "k"],
        vec!["SET", "k", "v"],
        vec!["CONFIG", "GET", "save"],
        vec!["CONFIG", "SET", "x", "y"],
        vec!["CONFIG"],
        vec!["CONFIG", "nosuch"],
        vec!["config", "get", "x"],
        vec!["GET", "k"],
        vec!["GETT", "k"],
        vec!["GE", "k"],
        vec!["GET", "k"],
        vec![""],
        vec!["georadiusbymember_ro", "k"],
        vec!["georadiusbymember_ro", "k"],
        vec!["restore-asking", "k"],
        vec!["get\0", "k"],
        vec!["client", "setname", "n"],
        vec!["client", "setname", "n"],
        vec!["get", "k"],
    ];
    let mut cache = LookupCache::default();
    for line in &lines {
        let want = lookup(&line[..]).map(|c| c.name);
        assert_eq!(cache.lookup(&line[..]).map(|c| c.name), want, "{line:?}");
    }
    let empty: [&[u8]; 0] = [];
    assert!(cache.lookup(&empty[..]).is_none());
    // A remembered name is compared byte for byte: a prefix or an extension is not it.
    assert_eq!(cache.lookup(&["get", "k"][..]).unwrap().name, "get");
    assert!(cache.lookup(&["ge", "k"][..]).is_none());
    assert!(cache.lookup(&["getx", "k"][..]).is_none());
    assert_eq!(cache.lookup(&["getex", "k"][..]).unwrap().name, "getex");
    assert_eq!(cache.lookup(&["get", "k"][..]).unwrap().name, "get");
}
