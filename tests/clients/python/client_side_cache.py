"""redis-py's client-side cache (`protocol=3, cache_config=CacheConfig()`) through slotgate
or straight to a server: the tracking suite (tests/tests/tracking.rs) runs it both ways.

Environment:
  SLOTGATE_PORT         where the client connects (redis-py caches only over TCP)
  SLOTGATE_DIRECT_PORT  the server holding the keys, for writes made directly on it
  SLOTGATE_PREFIX       key prefix (one hash tag: one node)
  SLOTGATE_EXPECT       "cached": redis-py caches (a server it accepts, Redis 7.4 or later);
                        "refused": redis-py refuses to cache (older servers, and servers
                        other than Redis)

With "cached": reads are cached by redis-py; the client's own writes (pipelined or not) are
read back at once; writes made directly on the node, or through a second pooled connection
of the client, are read back once their invalidation arrives (at most 2 s); the delay from a
direct write to redis-py seeing it is printed. With "refused": redis-py's own error, as against the server.
Exits 0 when all passed, 1 with a message naming the failed step.
"""

import sys
import time

import redis
from redis.cache import CacheConfig, CacheKey

from common import check, env

# How long a direct write may take to reach the client's cache (the node's report).
WAIT = 2.0


PREFIX = env("SLOTGATE_PREFIX")
EXPECT = env("SLOTGATE_EXPECT")


def step(name):
    print(f"client-side cache: {name}", flush=True)


def cached(r, key):
    """Whether redis-py holds a valid entry for GET key."""
    entry = r.get_cache().get(CacheKey(command="GET", redis_keys=(key,)))
    return entry is not None and entry.status.name == "VALID"


def read_until(r, key, want):
    """Reads key through r until it is want (at most WAIT s); the seconds it took."""
    start = time.monotonic()
    while True:
        got = r.get(key)
        if got == want:
            return time.monotonic() - start
        if time.monotonic() - start > WAIT:
            raise AssertionError(f"GET {key}: still {got!r} after {WAIT} s, want {want!r}")
        time.sleep(0.0005)


def main():
    r = redis.Redis(port=int(env("SLOTGATE_PORT")), protocol=3,
                    cache_config=CacheConfig(max_size=1000), decode_responses=True)
    direct = redis.Redis(port=int(env("SLOTGATE_DIRECT_PORT")), decode_responses=True)
    keys = [f"{PREFIX}k{i}" for i in range(20)]

    if EXPECT == "refused":
        step("redis-py refuses to cache for this server")
        try:
            r.ping()
        except redis.exceptions.ConnectionError as e:
            check("redis-py's error", "client-side caching is supported by Redis 7.4" in str(e),
                  True)
            print(f"client-side cache: refused: {e}", flush=True)
            return
        raise AssertionError("redis-py cached for a server it should refuse")
    check("SLOTGATE_EXPECT", EXPECT, "cached")

    step("reads are cached")
    for i, k in enumerate(keys):
        direct.set(k, f"v{i}")
    for i, k in enumerate(keys):
        check(f"GET {k}", r.get(k), f"v{i}")
        check(f"{k} in redis-py's cache", cached(r, k), True)
    for i, k in enumerate(keys):
        check(f"GET {k} (from the cache)", r.get(k), f"v{i}")

    step("writes made directly on the node are seen")
    delays = []
    for i, k in enumerate(keys[:10]):
        direct.set(k, f"direct{i}")
        delays.append(read_until(r, k, f"direct{i}"))
    direct.delete(keys[10])
    read_until(r, keys[10], None)
    for i, k in enumerate(keys[11:], start=11):
        check(f"{k} still cached", cached(r, k), True)
        check(f"GET {k} (untouched)", r.get(k), f"v{i}")
    delays.sort()
    print(f"client-side cache: direct write seen after p50 {delays[len(delays) // 2] * 1e3:.2f}"
          f" ms, max {delays[-1] * 1e3:.2f} ms", flush=True)

    step("own writes are read back at once")
    for round in range(200):
        k = keys[round % len(keys)]
        r.get(k)
        r.set(k, f"own{round}")
        check(f"GET {k} after SET (round {round})", r.get(k), f"own{round}")
        pipe = r.pipeline(transaction=False)
        pipe.set(k, f"piped{round}").incr(f"{PREFIX}counter")
        pipe.execute()
        check(f"GET {k} after a pipelined SET (round {round})", r.get(k), f"piped{round}")

    step("a write on another pooled connection is read back")
    # The connections of one pool share one cache: the key is read (and cached) on one, and
    # written on a second one taken while the first is held. The first connection's
    # invalidation is written by the server (Redis or slotgate) independently of the second
    # one's reply, and redis-py looks for it without waiting, so the new value is read once
    # it arrived, as for a write made directly on the node.
    pool = r.connection_pool
    for round in range(50):
        k = keys[round % len(keys)]
        check(f"GET {k}", r.get(k) is not None, True)
        first = pool.get_connection()
        other = pool.get_connection()
        check("two connections", first is not other, True)
        try:
            other.send_command("SET", k, f"other{round}")
            check("SET on the other connection", other.read_response(), "OK")
        finally:
            pool.release(other)
            pool.release(first)
        read_until(r, k, f"other{round}")


try:
    main()
except Exception:
    import traceback
    traceback.print_exc()
    sys.exit(1)
