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
"""
