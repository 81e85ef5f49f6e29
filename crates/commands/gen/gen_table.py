#!/usr/bin/env python3
"""Generate slotgate's static Redis command table from a live redis-server.

Usage:  python3 gen/gen_table.py [--host 127.0.0.1] [--port 7555]
        (run from crates/commands; python3 standard library only)

It connects with RESP3 (HELLO 3), asks COMMAND INFO (every command) and COMMAND DOCS,
writes the raw answers to gen/commands-7.0.json (for provenance and diffs), reads the
hand-maintained routing families from gen/families.tsv, and writes src/table_data.rs.
"""

import argparse
import json
import os
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CRATE = os.path.dirname(HERE)

# --- a tiny RESP3 client -------------------------------------------------------------


class Resp:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""

    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self.read()

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t in (b"+",):
            return rest.decode()
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b",":
            return float(rest)
        if t == b"#":
            return rest == b"t"
        if t == b"_":
            return None
        if t in (b"$", b"=", b"!"):
            n = int(rest)
            if n < 0:
                return None
            data = self._exact(n).decode()
            return data[4:] if t == b"=" else data
        if t in (b"*", b"~", b">"):
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        if t == b"%":
            n = int(rest)
            d = {}
            for _ in range(n):
                k = self.read()
                d[k] = self.read()
            return d
        if t == b"|":  # attribute: read and ignore, then the real value
            n = int(rest)
            for _ in range(2 * n):
                self.read()
            return self.read()
        raise ValueError("unknown RESP type %r" % line)


# --- model ----------------------------------------------------------------------------

FLAGS = [
    "write", "readonly", "denyoom", "module", "admin", "pubsub", "noscript", "blocking",
    "loading", "stale", "skip_monitor", "skip_slowlog", "asking", "fast", "no_auth",
    "may_replicate", "no_mandatory_keys", "no_async_loading", "no_multi", "movablekeys",
    "allow_busy",
]
FLAG_CONST = {f: f.upper() for f in FLAGS}
FLAG_CONST["movablekeys"] = "MOVABLE_KEYS"

CATEGORIES = [
    ("keyspace", "Keyspace"), ("read", "Read"), ("write", "Write"), ("set", "Set"),
    ("sortedset", "SortedSet"), ("list", "List"), ("hash", "Hash"), ("string", "String"),
    ("bitmap", "Bitmap"), ("hyperloglog", "HyperLogLog"), ("geo", "Geo"),
    ("stream", "Stream"), ("pubsub", "PubSub"), ("admin", "Admin"), ("fast", "Fast"),
    ("slow", "Slow"), ("blocking", "Blocking"), ("dangerous", "Dangerous"),
    ("connection", "Connection"), ("transaction", "Transaction"), ("scripting", "Scripting"),
]
CAT_VARIANT = dict(CATEGORIES)

KEY_FLAGS = ["RO", "RW", "OW", "RM", "access", "update", "insert", "delete", "not_key",
             "incomplete", "variable_flags"]

SPLIT = {"mget": "Mget", "mset": "Mset", "sum_integer": "SumInteger"}
MERGE = {"sum_integer": "SumInteger", "concat_arrays": "ConcatArrays", "all_ok": "AllOk",
         "first": "First", "any_non_nil": "AnyNonNil", "scan": "Scan",
         "and_arrays": "AndArrays", "sum_pairs": "SumPairs", "diagnostic": "Diagnostic"}
SIMPLE = {"local": "Local", "single": "Single", "keyless": "Keyless",
          "transaction": "Transaction", "blocking": "Blocking", "pubsub": "PubSub",
          "unsupported": "Unsupported"}


def family_expr(text, where):
    kind, _, arg = text.partition(":")
    if kind in SIMPLE and not arg:
        return "Family::" + SIMPLE[kind]
    if kind == "split" and arg in SPLIT:
        return "Family::Split(SplitKind::%s)" % SPLIT[arg]
    if kind == "all_shards" and arg in MERGE:
        return "Family::AllShards(MergeKind::%s)" % MERGE[arg]
    sys.exit("%s: unknown family %r" % (where, text))


def read_families(known):
    fams = {}
    path = os.path.join(HERE, "families.tsv")
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2:
                sys.exit("families.tsv:%d: want 'name<TAB>family'" % n)
            name, fam = parts[0].lower(), parts[1]
            if name not in known:
                sys.exit("families.tsv:%d: %r is not a command of this server" % (n, name))
            if name in fams:
                sys.exit("families.tsv:%d: %r listed twice" % (n, name))
            fams[name] = family_expr(fam, "families.tsv:%d" % n)
    return fams


def has_keys(info):
    return any("not_key" not in [f.lower() for f in ks["flags"]] for ks in info["key_specs"])


def parse_info(raw):
    """Turn one COMMAND INFO entry (RESP3) into a dict."""
    name, arity, flags, first, last, step, cats, tips, specs, subs = raw
    return {
        "name": name.lower(),
        "arity": arity,
        "flags": sorted(flags),
        "first_key": first,
        "last_key": last,
        "key_step": step,
        "acl_categories": [c.lstrip("@") for c in cats],
        "tips": tips,
        "key_specs": specs,
        "subcommands": sorted((parse_info(s) for s in (subs or [])), key=lambda c: c["name"]),
    }


# --- Rust emission ----------------------------------------------------------------------


def rs_str(s):
    return json.dumps(s)


def key_spec_rs(ks):
    bs, fk = ks["begin_search"], ks["find_keys"]
    if bs["type"] == "index":
        begin = "BeginSearch::Index(%d)" % bs["spec"]["index"]
    elif bs["type"] == "keyword":
        begin = "BeginSearch::Keyword { keyword: %s, start_from: %d }" % (
            rs_str(bs["spec"]["keyword"]), bs["spec"]["startfrom"])
    else:
        begin = "BeginSearch::Unknown"
    if fk["type"] == "range":
        s = fk["spec"]
        find = "FindKeys::Range { last_key: %d, step: %d, limit: %d }" % (
            s["lastkey"], s["keystep"], s["limit"])
    elif fk["type"] == "keynum":
        s = fk["spec"]
        find = "FindKeys::KeyNum { keynum_idx: %d, first_key: %d, step: %d }" % (
            s["keynumidx"], s["firstkey"], s["keystep"])
    else:
        find = "FindKeys::Unknown"
    flags = []
    for f in ks["flags"]:
        if f not in KEY_FLAGS:
            sys.exit("unknown key-spec flag %r" % f)
        flags.append("key_flag::" + f.upper())
    return "KeySpec { begin: %s, find: %s, flags: %s }" % (begin, find, " | ".join(flags) or "0")


def command_rs(c, index, fams, subs_ident, indent):
    flags = []
    for f in c["flags"]:
        if f not in FLAG_CONST:
            sys.exit("%s: unknown command flag %r (add it to lib.rs and FLAGS)" % (c["name"], f))
        flags.append("flag::" + FLAG_CONST[f])
    cats = []
    for cat in c["acl_categories"]:
        if cat not in CAT_VARIANT:
            sys.exit("%s: unknown ACL category %r" % (c["name"], cat))
        cats.append("cat(Category::%s)" % CAT_VARIANT[cat])
    fam = fams.get(c["name"]) or ("Family::Single" if has_keys(c) else "Family::Keyless")
    specs = ", ".join(key_spec_rs(ks) for ks in c["key_specs"])
    p = " " * indent
    return "\n".join([
        p + "Command {",
        p + "    name: %s," % rs_str(c["name"]),
        p + "    index: %d," % index,
        p + "    arity: %d," % c["arity"],
        p + "    flags: %s," % (" | ".join(flags) or "0"),
        p + "    acl_categories: %s," % (" | ".join(cats) or "0"),
        p + "    first_key: %d," % c["first_key"],
        p + "    last_key: %d," % c["last_key"],
        p + "    key_step: %d," % c["key_step"],
        p + "    key_specs: &[%s]," % specs,
        p + "    family: %s," % fam,
        p + "    subcommands: %s," % (("&" + subs_ident) if subs_ident else "&[]"),
        p + "},",
    ])


PACK = 24  # names are packed into three u64 words: lowercase, zero-padded, length in byte 23


def words(name):
    b = name.encode().ljust(PACK - 1, b"\0") + bytes([len(name)])
    return tuple("0x%016x" % int.from_bytes(b[i:i + 8], "little") for i in range(0, PACK, 8))


def lookup_rs(cmds):
    """`match`es on packed names: integer compares in a decision tree, no memcmp, no hash."""
    for c in cmds:
        for n in [c["name"]] + [s["name"].split("|", 1)[1] for s in c["subcommands"]]:
            if len(n) >= PACK:
                sys.exit("name %r longer than %d bytes" % (n, PACK - 1))
    out = ["/// Bytes in a packed name (the last holds the length): longer names are unknown.",
           "pub(crate) const PACK: usize = %d;" % PACK,
           "",
           "/// Position in [`COMMANDS`] of the top-level command whose name is packed into `w`",
           "/// (lowercase, zero-padded, length in the last byte; little-endian words).",
           "pub(crate) fn find_top(w: [u64; 3]) -> Option<usize> {",
           "    Some(match (w[0], w[1], w[2]) {"]
    for pos, c in enumerate(cmds):
        out.append("        (%s, %s, %s) => %d, // %s" % (words(c["name"]) + (pos, c["name"])))
    out += ["        _ => return None,", "    })", "}", "",
            "/// Position in `subcommands` of the container with `Command::index` `container`",
            "/// of the subcommand whose packed name (the part after `|`) is `w`.",
            "pub(crate) fn find_sub(container: u16, w: [u64; 3]) -> Option<usize> {",
            "    Some(match (container, w[0], w[1], w[2]) {"]
    index = 0
    for c in cmds:
        pos = index
        index += 1 + len(c["subcommands"])
        for j, sub in enumerate(c["subcommands"]):
            part = sub["name"].split("|", 1)[1]
            out.append("        (%d, %s, %s, %s) => %d, // %s" % ((pos,) + words(part) + (j, sub["name"])))
    out += ["        _ => return None,", "    })", "}"]
    return "\n".join(out)


def emit(version, cmds, fams):
    lines = [
        "// generated by gen/gen_table.py from redis-server %s; do not edit" % version,
        "// (edit gen/families.tsv or gen/gen_table.py and regenerate; see README.md)",
        "",
        "//! The generated Redis command table: one [`Command`] per command and subcommand.",
        "",
        "use crate::{flag, key_flag, BeginSearch, Category, Command, Family, FindKeys, KeySpec};",
        "use crate::{MergeKind, SplitKind};",
        "",
        "const fn cat(c: Category) -> u32 {",
        "    1 << c as u32",
        "}",
        "",
    ]
    index = 0
    order = []  # (ident expression, name) in index order
    top_rows = []
    sub_blocks = []
    for pos, c in enumerate(cmds):
        ident = None
        order.append("&COMMANDS[%d]" % pos)
        top_index = index
        index += 1
        if c["subcommands"]:
            ident = "SUB_" + c["name"].upper().replace("-", "_")
            rows = []
            for j, s in enumerate(c["subcommands"]):
                rows.append(command_rs(s, index, fams, None, 4))
                order.append("&%s[%d]" % (ident, j))
                index += 1
            sub_blocks.append("static %s: [Command; %d] = [\n%s\n];\n" % (
                ident, len(c["subcommands"]), "\n".join(rows)))
        top_rows.append(command_rs(c, top_index, fams, ident, 4))
    lines.append("/// Number of commands and subcommands; every `Command::index` is below it.")
    lines.append("pub const COMMAND_COUNT: usize = %d;" % index)
    lines.append("")
    lines.append("/// Top-level commands, sorted by name.")
    lines.append("pub(crate) static COMMANDS: [Command; %d] = [" % len(cmds))
    lines += top_rows
    lines.append("];")
    lines.append("")
    lines += sub_blocks
    lines.append("/// Every command and subcommand, by `Command::index`.")
    lines.append("pub(crate) static BY_INDEX: [&Command; COMMAND_COUNT] = [")
    lines += ["    %s," % o for o in order]
    lines.append("];")
    lines.append("")
    lines.append(lookup_rs(cmds))
    lines.append("")
    return "\n".join(lines)


def merge_extras(cmds):
    """Adds the few newer commands and subcommands of gen/extra-commands.json (see its
    _comment): the list under "top-level" as commands, each other list under its container."""
    with open(os.path.join(HERE, "extra-commands.json")) as f:
        extras = json.load(f)
    by_name = {c["name"]: c for c in cmds}
    for container, subs in extras.items():
        if container.startswith("_"):
            continue
        if container == "top-level":
            for cmd in subs:
                if cmd["name"] in by_name:
                    sys.exit("%s is on the server now: drop it from extra-commands.json" % cmd["name"])
                cmds.append(cmd)
            continue
        parent = by_name[container]
        have = {s["name"] for s in parent["subcommands"]}
        for sub in subs:
            if sub["name"] in have:
                sys.exit("%s is on the server now: drop it from extra-commands.json" % sub["name"])
            parent["subcommands"].append(sub)
        parent["subcommands"].sort(key=lambda c: c["name"])
    cmds.sort(key=lambda c: c["name"])
    return cmds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7555)
    ap.add_argument("--offline", action="store_true",
                    help="regenerate src/table_data.rs from gen/commands-7.0.json without a server")
    a = ap.parse_args()
    json_path = os.path.join(HERE, "commands-7.0.json")
    if a.offline:
        with open(json_path) as f:
            raw = json.load(f)
    else:
        r = Resp(a.host, a.port)
        hello = r.call("HELLO", "3")
        info = r.call("COMMAND", "INFO")
        docs = r.call("COMMAND", "DOCS")
        raw = {
            "redis_version": hello["version"],
            "command_info": sorted((parse_info(c) for c in info if c), key=lambda c: c["name"]),
            "command_docs": {k.lower(): docs[k] for k in sorted(docs)},
        }
        with open(json_path, "w") as f:
            json.dump(raw, f, indent=1, sort_keys=True)
            f.write("\n")
    cmds = merge_extras(raw["command_info"])
    known = set()
    for c in cmds:
        known.add(c["name"])
        known.update(s["name"] for s in c["subcommands"])
    fams = read_families(known)
    out = emit(raw["redis_version"], cmds, fams)
    with open(os.path.join(CRATE, "src", "table_data.rs"), "w") as f:
        f.write(out)
    print("wrote %d commands (%d with subcommands) from redis %s" % (
        len(cmds), len(known), raw["redis_version"]))


if __name__ == "__main__":
    main()
