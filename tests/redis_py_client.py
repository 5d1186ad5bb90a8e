#!/usr/bin/env python3
"""redis-py (8.x) against a running shoal node.

Usage: python3 tests/redis_py_client.py PORT

Runs every check with an explicit RESP3 client (protocol=3) and with the
library's defaults (redis-py 8 defaults to RESP3: HELLO 3, CLIENT SETINFO
and CLIENT MAINT_NOTIFICATIONS on connect). Prints each failure, then
"N passed, M failed"; exits non-zero if anything failed.
"""

import sys
import time
import traceback

import redis

PASSED = 0
FAILED = 0


def check(name, fn):
    global PASSED, FAILED
    try:
        fn()
    except Exception:  # noqa: BLE001 - every failure is reported the same way
        FAILED += 1
        print(f"FAIL {name}")
        traceback.print_exc(file=sys.stdout)
    else:
        PASSED += 1
        print(f"ok   {name}")


def s(v):
    """A reply as text, whether the client decodes or not."""
    return v.decode() if isinstance(v, bytes) else v


def checks(r, label):
    p = f"py:{label}:"

    def basics():
        assert r.ping() is True, "PING answers True"
        assert r.flushdb() is True, "FLUSHDB answers True"
        assert r.set(p + "k", "v") is True, "SET answers True"
        assert s(r.get(p + "k")) == "v", f"GET: {r.get(p + 'k')!r}"
        assert r.get(p + "missing") is None, "GET of a missing key is None"
        assert r.set(p + "k", "other", nx=True) is None, "SET NX on an existing key is None"
        assert r.set(p + "k", "v2", xx=True) is True, "SET XX on an existing key"
        assert s(r.set(p + "k", "v3", get=True)) == "v2", "SET GET returns the old value"
        assert s(r.getset(p + "k", "v4")) == "v3", "GETSET"

    def counters():
        assert r.incr(p + "n") == 1, "INCR of a new key"
        assert r.incr(p + "n", 10) == 11, "INCRBY"
        assert r.decr(p + "n", 3) == 8, "DECRBY"
        assert abs(r.incrbyfloat(p + "f", 10.5) - 10.5) < 1e-9, "INCRBYFLOAT"
        assert abs(r.incrbyfloat(p + "f", 0.1) - 10.6) < 1e-9, "INCRBYFLOAT 10.5 + 0.1"
        assert s(r.get(p + "f")) == "10.6", f"INCRBYFLOAT stores 10.6: {r.get(p + 'f')!r}"
        r.set(p + "word", "abc")
        try:
            r.incr(p + "word")
        except redis.ResponseError as e:
            assert str(e) == "value is not an integer or out of range", f"error text: {e}"
        else:
            raise AssertionError("INCR of a word must fail")

    def multi_keys():
        assert r.mset({p + "a": "1", p + "b": "2", p + "c": "3"}) is True, "MSET"
        got = [s(v) for v in r.mget([p + "a", p + "missing", p + "c"])]
        assert got == ["1", None, "3"], f"MGET: {got!r}"
        assert r.msetnx({p + "a": "x", p + "z": "y"}) is False, "MSETNX with an existing key"
        assert r.exists(p + "z") == 0, "MSETNX set nothing"
        assert r.exists(p + "a", p + "b", p + "missing") == 2, "EXISTS counts"
        assert r.exists(p + "a", p + "a") == 2, "EXISTS counts a key twice"
        assert r.delete(p + "a", p + "missing") == 1, "DEL counts"
        assert r.exists(p + "a") == 0, "deleted"

    def expiry():
        r.set(p + "e", "v")
        assert r.ttl(p + "e") == -1, "TTL without expiry"
        assert r.ttl(p + "missing") == -2, "TTL of a missing key"
        assert r.expire(p + "e", 100) is True, "EXPIRE"
        assert 99 <= r.ttl(p + "e") <= 100, f"TTL {r.ttl(p + 'e')}"
        assert 99000 <= r.pttl(p + "e") <= 100000, "PTTL"
        assert r.expire(p + "e", 50, gt=True) is False, "EXPIRE GT with a sooner time"
        assert r.persist(p + "e") is True, "PERSIST"
        assert r.ttl(p + "e") == -1, "TTL after PERSIST"
        assert r.set(p + "short", "v", px=100) is True, "SET PX"
        deadline = time.monotonic() + 10
        while r.exists(p + "short"):
            assert time.monotonic() < deadline, "a PX 100 key expires"
            time.sleep(0.02)
        assert r.expire(p + "e", -1) is True, "a negative EXPIRE"
        assert r.exists(p + "e") == 0, "a negative EXPIRE deletes"

    def scanning():
        r.flushdb()
        want = {f"{p}scan:{i}" for i in range(250)}
        r.mset({k: "x" for k in want})
        r.set(p + "other", "y")
        got = [s(k) for k in r.scan_iter(match=p + "scan:*", count=20)]
        assert len(got) == len(set(got)), "scan_iter returns each key once"
        assert set(got) == want, f"scan_iter found {len(set(got))} of {len(want)}"
        everything = {s(k) for k in r.scan_iter()}
        assert everything == want | {p + "other"}, "scan_iter without a pattern"
        keys = {s(k) for k in r.keys(p + "scan:1?")}
        assert keys == {f"{p}scan:{i}" for i in range(10, 20)}, f"KEYS: {sorted(keys)}"
        assert r.dbsize() == 251, f"DBSIZE {r.dbsize()}"

    def transaction_pipeline():
        r.set(p + "t", "5")
        pipe = r.pipeline()  # transaction=True: MULTI ... EXEC
        pipe.set(p + "t", "1").incr(p + "t").incrby(p + "t", 5).get(p + "t").get(p + "missing")
        got = pipe.execute()
        assert [s(v) for v in got] == [True, 2, 7, "7", None], f"MULTI/EXEC pipeline: {got!r}"
        with r.pipeline() as pipe:
            pipe.set(p + "t2", "a")
            pipe.append(p + "t2", "bc")
            pipe.strlen(p + "t2")
            assert pipe.execute() == [True, 3, 3], "second transaction"
        assert s(r.get(p + "t2")) == "abc", "transaction applied"

    def plain_pipeline():
        pipe = r.pipeline(transaction=False)
        for i in range(50):
            pipe.set(f"{p}pp:{i}", i)
        for i in range(50):
            pipe.incr(f"{p}pp:{i}")
        got = pipe.execute()
        assert got[:50] == [True] * 50, "50 SETs"
        assert got[50:] == list(range(1, 51)), "50 INCRs in order"

    def client_name():
        assert r.client_setname(f"pyclient-{label}") is True, "CLIENT SETNAME"
        assert s(r.client_getname()) == f"pyclient-{label}", f"CLIENT GETNAME: {r.client_getname()!r}"
        assert isinstance(r.client_id(), int), "CLIENT ID"

    def info():
        i = r.info()
        assert isinstance(i, dict), f"INFO parses as a dict: {type(i)}"
        assert str(i["redis_version"]).startswith("7."), f"redis_version {i.get('redis_version')!r}"
        assert i["role"] == "master", "role"
        assert i["loading"] == 0, "loading"
        server = r.info("server")
        assert "redis_version" in server and "role" not in server, "INFO server is one section"
        r.set(p + "x", "1")
        assert r.dbsize() >= 1, "DBSIZE"
        assert r.info("keyspace")["db0"]["keys"] == r.dbsize(), "INFO keyspace agrees with DBSIZE"

    for name, fn in [
        ("basics", basics),
        ("counters", counters),
        ("mset/mget/exists/delete", multi_keys),
        ("expire/ttl", expiry),
        ("scan_iter/keys/dbsize", scanning),
        ("pipeline() MULTI/EXEC", transaction_pipeline),
        ("pipeline(transaction=False)", plain_pipeline),
        ("client_setname/getname", client_name),
        ("info", info),
    ]:
        check(f"{label}: {name}", fn)


def main():
    if len(sys.argv) != 2:
        print("usage: redis_py_client.py PORT")
        return 2
    port = int(sys.argv[1])
    clients = [
        ("resp3", redis.Redis(port=port, protocol=3, socket_timeout=30)),
        ("defaults", redis.Redis(port=port, socket_timeout=30)),
        ("resp2-decoded", redis.Redis(port=port, protocol=2, decode_responses=True, socket_timeout=30)),
    ]

    def default_is_resp3():
        conn = clients[1][1].connection_pool.get_connection()
        try:
            assert str(conn.protocol) == "3", f"redis-py's default protocol is {conn.protocol!r}"
        finally:
            clients[1][1].connection_pool.release(conn)

    check("defaults: RESP3 negotiated", default_is_resp3)
    for label, r in clients:
        checks(r, label)
        r.close()
    print(f"{PASSED} passed, {FAILED} failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
