#!/usr/bin/env bash
# Builds a release of slotgate for x86_64 Linux: one static binary (musl libc, no shared
# libraries, runs on any x86_64 Linux) and what goes with it. Writes, in dist/ (or --out DIR):
#
#   slotgate-VERSION-x86_64-linux-musl.tar.gz   slotgate-VERSION-x86_64-linux-musl/ with the
#                                               binary, LICENSE, README.md, CHANGELOG.md,
#                                               SECURITY.md, config/*.yaml and docs/
#   slotgate-VERSION-x86_64-linux-musl.debug    the binary's debug info (file:line for gdb and
#                                               addr2line; put it next to the binary)
#   SHA256SUMS                                  `sha256sum -c SHA256SUMS` checks both
#
# The binary keeps its symbol table, so a backtrace (RUST_BACKTRACE=1) still names every
# function; only the DWARF debug info moves to the .debug file. VERSION is
# [workspace.package] version in Cargo.toml, and the built binary's --version must say it.
#
# Needs the Rust target x86_64-unknown-linux-musl (tried with `rustup target add` when
# missing; that downloads it) and a C compiler for musl (Debian/Ubuntu package musl-tools:
# ring, the crypto under rustls, has C and assembly parts). When either cannot be had the
# script says which and exits 1; it installs no system packages.
#
# Usage: scripts/release.sh [--out DIR]     (CARGO_TARGET_DIR is honoured)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGET=x86_64-unknown-linux-musl
out=dist
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "release.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nrelease.sh: %s\n' "$*" >&2; exit 1; }

version=$(awk '
  /^\[workspace\.package\]/ { p = 1; next }
  /^\[/ { p = 0 }
  p && $1 == "version" { gsub(/"/, "", $3); print $3; exit }
' Cargo.toml)
[ -n "$version" ] || fail "no version in Cargo.toml's [workspace.package]"
name="slotgate-$version-x86_64-linux-musl"

for tool in cargo sha256sum tar gzip objcopy readelf; do
  command -v "$tool" >/dev/null || fail "$tool not found (objcopy and readelf: package binutils)"
done

step "Rust target $TARGET"
# The target's standard library sits in the active toolchain's sysroot once installed.
target_libdir="$(rustc --print sysroot)/lib/rustlib/$TARGET/lib"
if [ ! -d "$target_libdir" ]; then
  command -v rustup >/dev/null \
    || fail "the Rust target $TARGET is not installed and there is no rustup to add it.
Install the standard library for $TARGET with your Rust distribution, then run this again.
No release was built."
  echo "not installed; trying: rustup target add $TARGET"
  rustup target add "$TARGET" \
    || fail "the Rust target $TARGET cannot be installed on this machine: rustup target add
downloads the target's standard library, so it needs the network (or a mirror). No release
was built. On a machine that can, run: rustup target add $TARGET"
fi
echo "installed: $target_libdir"

step "C compiler for $TARGET"
if [ -z "${CC_x86_64_unknown_linux_musl:-}" ]; then
  if command -v x86_64-linux-musl-gcc >/dev/null; then
    export CC_x86_64_unknown_linux_musl=x86_64-linux-musl-gcc
  elif command -v musl-gcc >/dev/null; then
    export CC_x86_64_unknown_linux_musl=musl-gcc
  else
    fail "no C compiler for musl (x86_64-linux-musl-gcc or musl-gcc). ring, the crypto
library under rustls, compiles C and assembly for the target. Install it
(Debian/Ubuntu: apt-get install musl-tools) or set CC_x86_64_unknown_linux_musl, then run
this again. No release was built."
  fi
fi
echo "CC_x86_64_unknown_linux_musl=$CC_x86_64_unknown_linux_musl"

step "cargo build --release --locked --target $TARGET -p slotgate"
cargo build --release --locked --target "$TARGET" -p slotgate
bin="${CARGO_TARGET_DIR:-$PWD/target}/$TARGET/release/slotgate"
[ -x "$bin" ] || fail "cargo reported success but $bin is missing"

step "checks"
if readelf -lW "$bin" | grep -q 'program interpreter'; then
  fail "$bin asks for a dynamic loader: not a static binary"
fi
if readelf -dW "$bin" 2>/dev/null | grep -q '(NEEDED)'; then
  fail "$bin needs shared libraries: not a static binary"
fi
echo "static: no program interpreter, no shared libraries"
said=$("$bin" --version | head -n 1)
case "$said" in
  "slotgate $version" | "slotgate $version "*) echo "--version: $said" ;;
  *) fail "the binary says '$said', Cargo.toml says $version" ;;
esac

step "dist: $out/$name.tar.gz"
mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/$name"
mkdir -p "$root/config"
objcopy --only-keep-debug "$bin" "$stage/$name.debug"
objcopy --strip-debug --add-gnu-debuglink="$stage/$name.debug" "$bin" "$root/slotgate"
chmod 0755 "$root/slotgate"
"$root/slotgate" --version >/dev/null || fail "the stripped binary does not run"
cp LICENSE README.md CHANGELOG.md SECURITY.md "$root/"
cp config/*.yaml "$root/config/"
cp -r docs "$root/docs"

# Same sources, same archive: fixed order, owner and times (SOURCE_DATE_EPOCH, else the
# last commit's time).
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
  -C "$stage" -cf - "$name" | gzip -n -9 >"$out/$name.tar.gz"
install -m 0644 "$stage/$name.debug" "$out/$name.debug"
(cd "$out" && sha256sum "$name.tar.gz" "$name.debug" >SHA256SUMS)

step "done"
(cd "$out" && ls -l "$name.tar.gz" "$name.debug" SHA256SUMS && cat SHA256SUMS)
tar -tzf "$out/$name.tar.gz" | sed -n '1,12p'
echo "… $(tar -tzf "$out/$name.tar.gz" | wc -l) entries"
