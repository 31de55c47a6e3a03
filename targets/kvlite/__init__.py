"""kvlite: the built-in leader-follower key-value target (DESIGN §6).

Every replication trade-off of the seeds is a switch, so each anomaly the checkers look for
can be produced on purpose and a safe configuration can be shown to pass:

- protocol.py    newline-delimited JSON wire format and the deterministic state machine
- log.py         durable append-only log with checksums, snapshot and persisted term/vote
- peers.py       outgoing peer connections (timeouts everywhere, reconnect on failure)
- replication.py per-follower replication loop and the commit rule of each mode
- election.py    failure detection and failover: none / naive / majority
- node.py        one node's state and request handlers
- server.py      the node process: `python3 -m targets.kvlite.server --name n1 ...`
- client.py      KvliteClient (chaos.target.Client), stdlib only
- plugin.py      KvliteTarget (chaos.target.Target)
- testing.py     local clusters and cuttable TCP forwarders for tests and benchmarks

The node server (everything server.py imports) uses only the standard library, so it runs in
bare python3 containers.

By hand, a 3-node cluster and a client (each node reaches its peers at the given addresses;
put proxies there to inject faults):

    python3 -m targets.kvlite.server --name n1 --listen 127.0.0.1:7001 --data-dir /tmp/kv/n1 \
        --peer n2=127.0.0.1:7002 --peer n3=127.0.0.1:7003 --initial-leader n1 \
        --replication semi-sync --failover naive          # (n2 and n3 likewise)
    printf '{"id":1,"op":"write","key":"k","value":1}\n{"id":2,"op":"status"}\n' \
        | nc -q1 127.0.0.1 7001

    from targets.kvlite.client import KvliteClient
    c = KvliteClient({"n1": ("127.0.0.1", 7001), "n2": ("127.0.0.1", 7002)})
    c.invoke({"f": "cas", "key": "k", "value": [1, 2]})   # {"type": "ok", "node": "n1", ...}

Admin ops for tests: promote, step-down, pause-replication {"value": bool}, snapshot.
"""
