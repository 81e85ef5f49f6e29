use proptest::prelude::*;
use slotgate_commands::{all, key_flag, lookup, Command, KeyIndices};

use slotgate_commands::MAX_SPECS;

use super::keys::collect_keys;
use super::{AclRules, Denied, KeyPerm, RuleErrorKind};

fn rules(text: &str) -> AclRules {
    AclRules::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn line(text: &str) -> Vec<Vec<u8>> {
    text.split_whitespace()
        .map(|a| {
            if a == "''" {
                Vec::new()
            } else {
                a.as_bytes().to_vec()
            }
        })
        .collect()
}

fn cmd_of(args: &[Vec<u8>]) -> &'static Command {
    lookup(args).unwrap_or_else(|| panic!("unknown command in {args:?}"))
}

/// `check` on a whitespace-separated line.
fn check(acl: &AclRules, text: &str) -> Result<(), Denied> {
    let args = line(text);
    acl.check(cmd_of(&args), &args[..])
}

fn error_text(text: &str) -> String {
    AclRules::parse(text).unwrap_err().to_string()
}

// --- parsing ----------------------------------------------------------------------------

#[test]
fn a_new_user_is_on_and_may_do_nothing() {
    let acl = rules("");
    assert!(acl.is_enabled());
    assert!(!acl.allows_all_keys() && !acl.allows_all_channels());
    assert_eq!(check(&acl, "GET k"), Err(Denied::Command { name: "get" }));
    assert_eq!(check(&acl, "PING"), Err(Denied::Command { name: "ping" }));
    assert_eq!(acl, AclRules::default());
}

#[test]
fn on_off_and_reset() {
    assert!(!rules("off").is_enabled());
    assert!(rules("off on").is_enabled());
    assert!(rules("OFF On").is_enabled());
    let acl = rules("+@all ~* &* reset");
    assert!(!acl.is_enabled(), "reset includes off, as in Redis");
    assert_eq!(acl, rules("off"));
    assert!(rules("reset on +get").is_enabled());
    assert_eq!(rules("  +get   ~a  "), rules("+get ~a"));
    assert_eq!(rules("+get clearselectors"), rules("+get"));
}

#[test]
fn rule_errors_use_redis_wording() {
    assert_eq!(
        error_text("+get foo"),
        "Error in ACL SETUSER modifier 'foo': Syntax error"
    );
    assert_eq!(
        error_text("+nosuch"),
        "Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL"
    );
    for rule in [
        "+@nosuch",
        "-@",
        "+",
        "-",
        "+|",
        "-get|x",
        "+config|nosuch",
        "-config|nosuch",
        "+get|x|",
        "-a|b|c",
    ] {
        let e = AclRules::parse(rule).unwrap_err();
        assert_eq!(e.kind(), RuleErrorKind::UnknownName, "{rule}");
        assert_eq!(e.rule(), rule);
    }
    for rule in [
        "%", "%~x", "%RX~x", "%RR~x", "%X", "~a\0b", "&a\0", "(+get", "foo", "@all", "*",
    ] {
        let kind = AclRules::parse(rule).unwrap_err().kind();
        let want = if rule.starts_with('(') {
            RuleErrorKind::Selector
        } else {
            RuleErrorKind::Syntax
        };
        assert_eq!(kind, want, "{rule:?}");
    }
    assert_eq!(
        error_text("+get|"),
        "Error in ACL SETUSER modifier '+get|': Syntax error"
    );
    assert_eq!(
        error_text("+config|get|x"),
        "Error in ACL SETUSER modifier '+config|get|x': Allowing first-arg of a subcommand is not supported"
    );
    assert_eq!(
        error_text("allkeys ~b"),
        "Error in ACL SETUSER modifier '~b': Adding a pattern after the * pattern (or the \
         'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start \
         with an empty list of patterns"
    );
    assert_eq!(
        AclRules::parse("~* %R~x").unwrap_err().kind(),
        RuleErrorKind::KeyPatternAfterAllKeys
    );
    assert_eq!(
        error_text("&* &x"),
        "Error in ACL SETUSER modifier '&x': Adding a pattern after the * pattern (or the \
         'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to \
         start with an empty list of channels"
    );
    // After reset, patterns are welcome again.
    rules("~* resetkeys ~x &* resetchannels &y");
    rules("allkeys ~*");
}

#[test]
fn unsupported_rules_say_so() {
    assert_eq!(
        AclRules::parse("+select|0").unwrap_err().kind(),
        RuleErrorKind::FirstArg
    );
    for rule in [
        "nopass",
        "resetpass",
        ">secret",
        "<secret",
        "#abc",
        "!abc",
        "NoPass",
    ] {
        let e = AclRules::parse(rule).unwrap_err();
        assert_eq!(e.kind(), RuleErrorKind::Password, "{rule}");
        assert!(!e.to_string().contains("secret"), "leaks the password: {e}");
        assert!(e.to_string().contains("password"), "{e}");
    }
    assert_eq!(
        AclRules::parse("(+get ~x)").unwrap_err().kind(),
        RuleErrorKind::Selector
    );
    assert_eq!(
        AclRules::parse("skip-sanitize-payload").unwrap_err().kind(),
        RuleErrorKind::Sanitize
    );
}

#[test]
fn a_refused_rule_changes_nothing() {
    let mut acl = rules("+get ~a");
    let before = acl.clone();
    for rule in ["+nosuch", "%RX~b", "+@nosuch", "+config|get|x", ">pw"] {
        assert!(acl.apply(rule).is_err());
        assert_eq!(acl, before, "{rule}");
    }
}

#[test]
fn key_pattern_forms() {
    let acl = rules("%R~r* %W~w* ~rw* %RW~both %wr~also %R~m %W~m %R");
    assert!(acl.check_key(b"r1", KeyPerm::READ));
    assert!(!acl.check_key(b"r1", KeyPerm::WRITE));
    assert!(acl.check_key(b"w1", KeyPerm::WRITE));
    assert!(!acl.check_key(b"w1", KeyPerm::READ));
    assert!(acl.check_key(b"w1", KeyPerm::NONE));
    for key in [&b"rw1"[..], b"both", b"also", b"m"] {
        assert!(acl.check_key(key, KeyPerm::READ_WRITE), "{key:?}");
    }
    assert!(
        acl.check_key(b"", KeyPerm::READ),
        "`%R` alone is the empty pattern"
    );
    assert!(!acl.check_key(b"", KeyPerm::WRITE));
    assert!(!acl.check_key(b"x", KeyPerm::NONE));
    assert!(
        !rules("%R~*").check_key(b"", KeyPerm::NONE),
        "`*` does not match ''"
    );
    assert!(rules("allkeys").check_key(b"", KeyPerm::READ_WRITE));
}

// --- commands ---------------------------------------------------------------------------

#[test]
fn command_rules_apply_in_order() {
    let acl = rules("+@all -@dangerous +flushdb ~* &*");
    assert!(check(&acl, "FLUSHDB").is_ok());
    assert_eq!(
        check(&acl, "FLUSHALL"),
        Err(Denied::Command { name: "flushall" })
    );
    assert!(check(&acl, "GET k").is_ok());
    assert_eq!(
        check(&acl, "CONFIG SET a b"),
        Err(Denied::Command { name: "config|set" })
    );

    let acl = rules("-@all +get allkeys");
    assert!(check(&acl, "get k").is_ok());
    assert_eq!(check(&acl, "SET k v"), Err(Denied::Command { name: "set" }));

    let acl = rules("allcommands -get nocommands +set ~*");
    assert!(check(&acl, "SET k v").is_ok());
    assert!(check(&acl, "GET k").is_err());

    let acl = rules("+@READ -Get ~*");
    assert!(check(&acl, "GET k").is_err());
    assert!(check(&acl, "STRLEN k").is_ok());
}

#[test]
fn subcommand_rules() {
    let acl = rules("-@all +client|id");
    assert!(check(&acl, "CLIENT ID").is_ok());
    assert!(check(&acl, "client id").is_ok());
    assert_eq!(
        check(&acl, "CLIENT KILL x"),
        Err(Denied::Command {
            name: "client|kill"
        })
    );

    let acl = rules("+config -config|set");
    assert!(check(&acl, "CONFIG GET x").is_ok());
    assert!(check(&acl, "CONFIG SET x y").is_err());

    let acl = rules("-config +config|get");
    assert!(check(&acl, "CONFIG GET x").is_ok());
    assert!(check(&acl, "CONFIG RESETSTAT").is_err());

    // +/- on a container covers every subcommand.
    let acl = rules("+config|get -config");
    assert!(check(&acl, "CONFIG GET x").is_err());
    let acl = rules("+client");
    assert!(check(&acl, "CLIENT KILL x").is_ok());
}

#[test]
fn categories_move_containers_with_all_their_subcommands() {
    // CLIENT is @slow, so -@slow denies even the @fast-free subcommands, as Redis does.
    let acl = rules("+@all -@slow");
    assert_eq!(
        check(&acl, "GET k"),
        Err(Denied::Key { index: 1 }),
        "GET is @fast"
    );
    assert_eq!(
        check(&acl, "CLIENT ID"),
        Err(Denied::Command { name: "client|id" })
    );
    let acl = rules("-@all +@connection -client");
    assert!(check(&acl, "CLIENT ID").is_err());
    assert!(check(&acl, "PING").is_ok());
    let acl = rules("-@all +client -@connection");
    assert!(check(&acl, "CLIENT ID").is_err());
    let acl = rules("-@all +@connection");
    assert!(check(&acl, "CLIENT ID").is_ok());
}

#[test]
fn no_auth_commands_are_always_allowed() {
    let acl = rules("nocommands");
    assert!(check(&acl, "AUTH pw").is_ok());
    assert!(check(&acl, "HELLO 2").is_ok());
    assert!(check(&acl, "PING").is_err());
}

#[test]
fn a_container_resolves_to_its_subcommand() {
    let acl = rules("-@all +config|get");
    let args = line("CONFIG GET x");
    let container = slotgate_commands::lookup_name(b"config").unwrap();
    assert!(acl.check(container, &args[..]).is_ok());
    let args = line("CONFIG NOSUCH x");
    assert_eq!(
        acl.check(container, &args[..]),
        Err(Denied::Command { name: "config" })
    );
}

// --- keys -------------------------------------------------------------------------------

#[test]
fn read_and_write_patterns_follow_key_spec_flags() {
    let acl = rules("+@all %R~r* %W~w* ~a*");
    assert!(check(&acl, "GET r1").is_ok());
    assert_eq!(check(&acl, "GET w1"), Err(Denied::Key { index: 1 }));
    assert!(
        check(&acl, "SET w1 v").is_ok(),
        "SET without GET only writes"
    );
    assert_eq!(check(&acl, "SET r1 v"), Err(Denied::Key { index: 1 }));
    assert_eq!(check(&acl, "SET w1 v GET"), Err(Denied::Key { index: 1 }));
    assert!(check(&acl, "SET a1 v GET").is_ok());
    assert!(
        check(&acl, "EXISTS w1 r1").is_ok(),
        "EXISTS is RO without access"
    );
    assert_eq!(check(&acl, "EXISTS w1 zz"), Err(Denied::Key { index: 2 }));
    assert!(check(&acl, "DEL w1").is_ok());
    assert_eq!(check(&acl, "DEL r1"), Err(Denied::Key { index: 1 }));
    assert_eq!(check(&acl, "GETDEL w1"), Err(Denied::Key { index: 1 }));
    assert!(check(&acl, "GETDEL a1").is_ok());
    assert!(check(&acl, "COPY r1 w1").is_ok());
    assert_eq!(check(&acl, "COPY w1 w2"), Err(Denied::Key { index: 1 }));
    assert_eq!(check(&acl, "COPY r1 r2"), Err(Denied::Key { index: 2 }));
    assert!(check(&acl, "LMOVE a1 w1 LEFT RIGHT").is_ok());
    assert_eq!(
        check(&acl, "LMOVE r1 w1 LEFT RIGHT"),
        Err(Denied::Key { index: 1 })
    );
    assert!(check(&acl, "MGET r1 r2 a3 r4 r5 r6 r7 r8 r9 r10 r11").is_ok());
    assert_eq!(
        check(&acl, "MGET r1 r2 a3 r4 r5 r6 r7 r8 r9 w10 r11"),
        Err(Denied::Key { index: 10 })
    );
    assert_eq!(check(&acl, "MSET w1 v r2 v"), Err(Denied::Key { index: 3 }));
    assert!(check(&acl, "SORT r1 STORE w1").is_ok());
    assert_eq!(
        check(&acl, "SORT r1 STORE r2"),
        Err(Denied::Key { index: 3 })
    );
    assert!(check(&acl, "SORT_RO r1").is_ok());
    assert!(check(&acl, "BITFIELD r1 GET u8 0").is_ok());
    assert_eq!(
        check(&acl, "BITFIELD r1 GET u8 0 SET u8 0 1"),
        Err(Denied::Key { index: 1 })
    );
    assert_eq!(
        check(&acl, "BITFIELD w1 GET u8 0"),
        Err(Denied::Key { index: 1 })
    );
    assert!(check(&acl, "BITFIELD a1 INCRBY u8 0 1").is_ok());
    assert!(check(&acl, "XREAD COUNT 2 STREAMS r1 r2 0 0").is_ok());
    assert!(check(&acl, "EVAL s 2 a1 a2 x").is_ok());
    assert_eq!(
        check(&acl, "EVAL s 2 a1 r2 x"),
        Err(Denied::Key { index: 4 })
    );
    assert!(check(&acl, "EVAL s 0").is_ok());
}

#[test]
fn key_finders_used_where_the_specs_fail() {
    let acl = rules("+@all %R~r*");
    // A numkeys that the specs reject but C's atoi reads: Redis checks the key (no flags).
    assert!(check(&acl, "EVAL s 01 r1").is_ok());
    assert_eq!(check(&acl, "EVAL s 01 w1"), Err(Denied::Key { index: 3 }));
    assert!(
        check(&acl, "EVAL s 5 w1").is_ok(),
        "numkeys too big: no keys, EVAL fails"
    );
    // MIGRATE ... KEYS: every key, read+write.
    let acl = rules("+@all ~k* %R~r*");
    assert!(check(&acl, "MIGRATE h 1 '' 0 10 KEYS k1 k2").is_ok());
    assert_eq!(
        check(&acl, "MIGRATE h 1 '' 0 10 KEYS k1 r2"),
        Err(Denied::Key { index: 8 })
    );
}

#[test]
fn option_keywords_compare_like_strcasecmp() {
    // Redis's SET sees "GET\0x" as GET (strcasecmp stops at NUL): it reads the key.
    let acl = rules("+@all %W~w*");
    let args: Vec<&[u8]> = vec![b"SET", b"w1", b"v", b"GET\0x"];
    assert_eq!(
        acl.check(cmd_of_slices(&args), &args[..]),
        Err(Denied::Key { index: 1 })
    );
    let args: Vec<&[u8]> = vec![b"SORT", b"w1", b"STORE\0", b"zz"];
    let found = collect_keys(cmd_of_slices(&args), &args[..]);
    assert_eq!(found.iter().map(|k| k.0).collect::<Vec<_>>(), [1, 3]);
}

fn cmd_of_slices(args: &[&[u8]]) -> &'static Command {
    lookup(args).unwrap()
}

// --- channels ---------------------------------------------------------------------------

#[test]
fn channels() {
    let acl = rules("+@all &ch* &news");
    assert!(check(&acl, "PUBLISH ch1 m").is_ok());
    assert_eq!(
        check(&acl, "PUBLISH zz m"),
        Err(Denied::Channel { index: 1 })
    );
    assert!(check(&acl, "SPUBLISH news m").is_ok());
    assert!(check(&acl, "SUBSCRIBE ch1 news").is_ok());
    assert_eq!(
        check(&acl, "SUBSCRIBE ch1 zz"),
        Err(Denied::Channel { index: 2 })
    );
    assert_eq!(
        check(&acl, "SSUBSCRIBE zz"),
        Err(Denied::Channel { index: 1 })
    );
    assert!(
        check(&acl, "PSUBSCRIBE ch*").is_ok(),
        "a pattern equal to a rule"
    );
    assert_eq!(
        check(&acl, "PSUBSCRIBE ch1"),
        Err(Denied::Channel { index: 1 }),
        "PSUBSCRIBE patterns are compared literally"
    );
    assert!(check(&acl, "UNSUBSCRIBE zz").is_ok());
    assert!(check(&acl, "PUNSUBSCRIBE zz").is_ok());
    assert!(check(&acl, "PUBSUB CHANNELS zz").is_ok());
    let none = rules("+@all");
    assert!(check(&none, "PUBLISH ch m").is_err());
    assert!(check(&rules("+@all allchannels"), "PSUBSCRIBE *").is_ok());
    assert!(check(&rules("+@all &*"), "PUBLISH x m").is_ok());
    // The command comes first, then keys, then channels.
    assert_eq!(
        check(&rules("-@all &zz"), "PUBLISH x m"),
        Err(Denied::Command { name: "publish" })
    );
}

// --- replies ----------------------------------------------------------------------------

#[test]
fn noperm_replies() {
    assert_eq!(
        &Denied::Command { name: "config|get" }.reply()[..],
        b"-NOPERM this user has no permissions to run the 'config|get' command\r\n"
    );
    assert_eq!(
        &Denied::Key { index: 1 }.reply()[..],
        b"-NOPERM this user has no permissions to access one of the keys used as arguments\r\n"
    );
    assert_eq!(
        &Denied::Channel { index: 3 }.reply()[..],
        b"-NOPERM this user has no permissions to access one of the channels used as arguments\r\n"
    );
    assert_eq!(Denied::Key { index: 1 }.to_string(), super::NOPERM_KEY);
}

#[test]
fn debug_shows_rules_not_bitmaps() {
    let text = format!("{:?}", rules("-@all +get %R~a* &c"));
    assert!(text.contains("commands_allowed: 1"), "{text}");
    assert!(text.contains("%R~a*"), "{text}");
}

// --- key finding agrees with the command table ------------------------------------------

#[test]
fn no_command_has_more_key_specs_than_we_hold() {
    for cmd in all()
        .iter()
        .flat_map(|c| std::iter::once(c).chain(c.subcommands))
    {
        assert!(cmd.key_specs.len() <= MAX_SPECS, "{}", cmd.name);
    }
}

/// Key positions equal `Command::key_indices` (checked against `COMMAND GETKEYS` in
/// crates/commands) for every line where that succeeds.
#[test]
fn key_positions_match_key_indices_on_the_getkeys_lines() {
    let mut compared = 0;
    for text in include_str!("../../../../commands/tests/getkeys_lines.txt").lines() {
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let args = line(text);
        let cmd = cmd_of(&args);
        let mut want = KeyIndices::new();
        if cmd.key_indices(&args[..], &mut want).is_ok() {
            let ours: Vec<u32> = collect_keys(cmd, &args[..])
                .into_iter()
                .map(|(i, _)| i as u32)
                .collect();
            assert_eq!(ours, want.as_slice(), "{text}");
            compared += 1;
        }
    }
    assert!(compared > 200, "only {compared} lines compared");
}

#[test]
fn flags_come_from_the_matching_spec() {
    let args = line("COPY src dst");
    let keys = collect_keys(cmd_of(&args), &args[..]);
    assert_eq!(keys[0], (1, key_flag::RO | key_flag::ACCESS));
    assert_eq!(keys[1], (2, key_flag::OW | key_flag::UPDATE));
    assert_eq!(KeyPerm::for_key_flags(keys[0].1), KeyPerm::READ);
    assert_eq!(KeyPerm::for_key_flags(keys[1].1), KeyPerm::WRITE);
    assert_eq!(KeyPerm::for_key_flags(key_flag::RM), KeyPerm::NONE);
}

fn every_command() -> Vec<&'static Command> {
    all()
        .iter()
        .flat_map(|c| std::iter::once(c).chain(c.subcommands))
        .collect()
}

fn arbitrary_line() -> impl Strategy<Value = (usize, Vec<Vec<u8>>)> {
    let word = prop_oneof![
        4 => proptest::sample::select(vec![
            "k", "0", "1", "2", "3", "STORE", "STREAMS", "KEYS", "GET", "SET", "BY", "LIMIT",
            "STOREDIST", "GROUP", "COUNT", "BLOCK", "AUTH", "AUTH2", "", "-1", "01", "OVERFLOW",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..4),
    ];
    (
        0..every_command().len(),
        proptest::collection::vec(word, 0..10),
    )
}

fn full_line(cmd: &Command, rest: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut args: Vec<Vec<u8>> = cmd.name.split('|').map(|p| p.as_bytes().to_vec()).collect();
    args.extend(rest.iter().cloned());
    args
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn key_positions_match_key_indices_on_random_lines((which, rest) in arbitrary_line()) {
        let cmd = every_command()[which];
        let args = full_line(cmd, &rest);
        prop_assume!(!args.iter().any(|a| a.contains(&0)));
        let mut want = KeyIndices::new();
        if cmd.key_indices(&args[..], &mut want).is_ok() {
            let ours: Vec<u32> = collect_keys(cmd, &args[..]).into_iter().map(|(i, _)| i as u32).collect();
            prop_assert_eq!(ours, want.as_slice().to_vec());
        }
    }

    #[test]
    fn check_never_panics((which, rest) in arbitrary_line(), rule_words in proptest::collection::vec(
        proptest::sample::select(vec![
            "+@all", "-@all", "%R~k*", "%W~*", "~*", "&*", "&c", "+get", "-@read", "resetkeys",
            "%RW~k", "+config|get", "-client", "allchannels", "reset", "on",
        ]), 0..6)) {
        let cmd = every_command()[which];
        let args = full_line(cmd, &rest);
        let mut acl = AclRules::new();
        for word in rule_words {
            let _ = acl.apply(word);
        }
        if let Err(Denied::Key { index } | Denied::Channel { index }) = acl.check(cmd, &args[..]) {
            prop_assert!(index > 0 && index < args.len());
        }
        // Short lines (arity not checked) must not panic either.
        let _ = acl.check(cmd, &args[..args.len().min(1)]);
    }

    #[test]
    fn parse_never_panics(text in "\\PC{0,40}") {
        let _ = AclRules::parse(&text);
    }

    #[test]
    fn parse_never_panics_on_rule_like_text(text in "[-+~%&@|a-zA-Z*?\\[\\] ()<>#!]{0,30}") {
        let _ = AclRules::parse(&text);
    }
}

#[test]
fn commands_learned_from_the_servers_follow_the_category_rules() {
    use slotgate_commands::{flag, Category, Family, COMMAND_COUNT};
    let learned = Command {
        name: "hexpire",
        index: COMMAND_COUNT as u16,
        arity: -6,
        flags: flag::WRITE,
        acl_categories: Category::Write.bit() | Category::Hash.bit(),
        first_key: 1,
        last_key: 1,
        key_step: 1,
        key_specs: &[],
        family: Family::Single,
        subcommands: &[],
    };
    assert!(rules("+@all").allows_command(&learned));
    assert!(!rules("+@all -@hash").allows_command(&learned));
    assert!(rules("-@all +@hash").allows_command(&learned));
    assert!(!rules("+@read").allows_command(&learned));
    assert!(!rules("").allows_command(&learned));
    assert!(!rules("+@all reset on").allows_command(&learned));
}
