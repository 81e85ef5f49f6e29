"""redis-py through slotgate: the client_libraries suite runs one scenario per process.

Usage: redis_py.py SCENARIO, with SCENARIO one of
  resp2    redis.Redis(protocol=2)
  resp3    redis.Redis(protocol=3)
  cluster  redis.cluster.RedisCluster (COMMAND and CLUSTER SLOTS at construction)
  db       redis.Redis(db=SLOTGATE_DB), for slotgate in sentinel or standalone mode; also
           leaves PREFIX + "db-marker" = "db" + SLOTGATE_DB for the caller to find there

Each scenario connects as SLOTGATE_USER / SLOTGATE_PASSWORD to 127.0.0.1:SLOTGATE_PORT and
runs a pipeline, MULTI/EXEC (with WATCH, but for RedisCluster), Pub/Sub (subscriber and
publisher on two connections) and a BLPOP answered by an RPUSH from another connection. Keys
and channels start with SLOTGATE_PREFIX. Exits 0 when all passed, 1 with a message naming the
failed step.
"""

import os
import sys
import threading
import time
import traceback

import redis
import redis.cluster

from common import check, env

WAIT = 10.0


PORT = int(env("SLOTGATE_PORT"))
USER = env("SLOTGATE_USER")
PASSWORD = env("SLOTGATE_PASSWORD")
PREFIX = env("SLOTGATE_PREFIX", f"redis-py:{os.getpid()}:")


def step(name):
    print(f"redis-py: {name}", flush=True)


def next_message(pubsub):
    """The next message or confirmation `pubsub` receives, `None` after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=0.2)
        if msg is not None:
            return msg
    return None


def exercise(connect, tag, client_info):
    """The common scenario; `connect()` opens a new client, keys share the hash tag `tag`,
    and CLIENT INFO shows the fields `client_info` (the user, RESP version, database)."""
    r = connect()
    step("connect and AUTH")
    check("PING", r.ping(), True)
    check("ACL WHOAMI", r.acl_whoami(), USER)
    info = r.client_info()
    check("CLIENT INFO", {k: str(info.get(k)) for k in client_info}, client_info)

    step("pipeline")
    k = f"{{{tag}}}:p"
    pipe = r.pipeline(transaction=False)
    pipe.set(k, "1").incr(k).get(k).delete(k)
    check("pipeline replies", pipe.execute(), [True, 2, "2", 1])

    counter = f"{{{tag}}}:counter"
    r.set(counter, 41)
    if isinstance(r, redis.cluster.RedisCluster):
        step("MULTI/EXEC")
        # RedisCluster's transactions apply only its cluster reply callbacks: SET gives "OK".
        with r.pipeline(transaction=True) as pipe:
            pipe.incr(counter).set(f"{{{tag}}}:other", "x").get(counter)
            check("EXEC replies", pipe.execute(), [42, "OK", "42"])
    else:
        step("MULTI/EXEC with WATCH")
        with r.pipeline() as pipe:
            pipe.watch(counter)
            value = int(pipe.get(counter))
            pipe.multi()
            pipe.set(counter, value + 1).set(f"{{{tag}}}:other", "x").get(counter)
            check("EXEC replies", pipe.execute(), [True, True, "42"])
    check("after EXEC", r.get(counter), "42")

    step("Pub/Sub")
    channel = f"{PREFIX}chan"
    sub = connect()
    pubsub = sub.pubsub()
    pubsub.subscribe(channel)
    confirmed = next_message(pubsub)
    check("SUBSCRIBE confirmation", confirmed and confirmed["type"], "subscribe")
    check("subscribed channel", confirmed["channel"], channel)
    check("PUBLISH receivers", r.publish(channel, "hello"), 1)
    received = next_message(pubsub)
    check("message", received and (received["type"], received["channel"], received["data"]),
          ("message", channel, "hello"))
    pubsub.close()
    sub.close()

    step("BLPOP answered by a push from another connection")
    queue = f"{{{tag}}}:queue"
    pusher = connect()
    errors = []

    def push():
        try:
            time.sleep(0.3)
            pusher.rpush(queue, "job")
        except Exception as e:  # reported by the main thread
            errors.append(e)

    thread = threading.Thread(target=push)
    thread.start()
    popped = r.blpop([queue], timeout=int(WAIT))
    thread.join()
    if errors:
        raise AssertionError(f"RPUSH from the other connection: {errors[0]!r}")
    # A tuple in RESP2, a list in RESP3.
    check("BLPOP", popped and list(popped), [queue, "job"])
    pusher.close()
    return r


def plain(**kwargs):
    return lambda: redis.Redis(
        host="127.0.0.1",
        port=PORT,
        username=USER,
        password=PASSWORD,
        decode_responses=True,
        socket_timeout=WAIT + 5,
        **kwargs,
    )


def scenario_resp(protocol):
    expected = {"user": USER, "resp": str(protocol), "db": "0"}
    exercise(plain(protocol=protocol), f"{PREFIX}resp{protocol}", expected)


def scenario_cluster():
    def connect():
        return redis.cluster.RedisCluster(
            host="127.0.0.1",
            port=PORT,
            username=USER,
            password=PASSWORD,
            decode_responses=True,
            socket_timeout=WAIT + 5,
        )

    rc = connect()
    step("one-node cluster")
    nodes = rc.get_nodes()
    check("nodes", [(n.host, n.port) for n in nodes], [("127.0.0.1", PORT)])
    # Keys in different slots all go to the one node that owns every slot.
    keys = [f"{PREFIX}cluster:{i}" for i in range(8)]
    for i, k in enumerate(keys):
        rc.set(k, i)
    check("MGET across slots", rc.mget_nonatomic(keys), [str(i) for i in range(8)])
    exercise(connect, f"{PREFIX}cluster", {"user": USER, "resp": "2"})


def scenario_db():
    db = int(env("SLOTGATE_DB"))
    r = exercise(plain(db=db), f"{PREFIX}db", {"user": USER, "db": str(db)})
    r.set(f"{PREFIX}db-marker", f"db{db}")
    check("marker", r.get(f"{PREFIX}db-marker"), f"db{db}")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    scenarios = {
        "resp2": lambda: scenario_resp(2),
        "resp3": lambda: scenario_resp(3),
        "cluster": scenario_cluster,
        "db": scenario_db,
    }
    run = scenarios.get(sys.argv[1])
    if run is None:
        sys.exit(f"redis_py.py: unknown scenario {sys.argv[1]!r}; one of {', '.join(scenarios)}")
    try:
        run()
    except Exception:
        traceback.print_exc()
        print(f"redis-py {redis.__version__} {sys.argv[1]}: FAILED", file=sys.stderr)
        sys.exit(1)
    print(f"redis-py {redis.__version__} {sys.argv[1]}: ok")


if __name__ == "__main__":
    main()
