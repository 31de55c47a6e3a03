"""EtcdClient: one logical client process on an etcd cluster, through the v3 JSON gateway.

Implements chaos.target.Client for the register and set workloads (op shapes: DESIGN §4):

- register, key k -> etcd key "r/k", value the decimal string of the int written:
  read = range (linearizable by default; `serializable` answers from the member's own state,
  which may be stale: the unsafe mode), write = put, cas [expected, new] = one txn comparing
  the key's value with expected (or "key absent", create_revision 0, for None) and putting
  new when equal; a compare that failed is a "fail" (the txn surely changed nothing).
- set, key s -> one etcd key per element, "s/s/<element>" (empty value): add = put,
  read-set = a keys-only range over the prefix (no values travel; the answer grows by one
  short key per element).
- an op naming a node (op["node"], as the final reads do) goes to that member and reads with
  serializable consistency: each member answers from its own applied state.

Which member: `endpoints="all"` sends each op to a random member (a request that could not
even connect goes to the next one: it was never sent); `"one"` sticks to one member chosen
when the client is made. Outcomes: ok with `node` (the member that answered) and meta
{"term": the term of the last entry the member applied when it answered (so >= the term the
op committed in), "revision": the KV revision}; fail when
surely not applied (cas compare failed, connect refused, an error etcd raises before
proposing: see gateway.refused); a read that errs or times out is a fail too (a read changes
nothing, so not having its value is all that is lost); info for a write whose answer never
came (timeout, lost connection) or came as an error that may follow a proposal
("request timed out", "leader changed").
"""
from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from chaos.target import MAIN, Endpoints

from .gateway import (
    EtcdError,
    Gateway,
    NoAnswer,
    NotSent,
    b64,
    prefix_end,
    refused,
    unb64,
)

READS = ("read", "read-set")


def register_key(key: Any) -> str:
    return f"r/{key}"


def set_prefix(key: Any) -> str:
    return f"s/{key}/"


class _Failed(Exception):
    """A request that reached member `node` and came back with `error` (no answer or an
    etcd error)."""

    def __init__(self, node: str, error: NoAnswer | EtcdError):
        super().__init__(f"{node}: {error}")
        self.node = node
        self.error = error


class EtcdClient:
    """A chaos.target.Client for etcd (see the module doc for the mapping and outcomes)."""

    def __init__(self, endpoints: Endpoints, timeout: float = 2.0,
                 read_consistency: str = "linearizable", endpoint_mode: str = "all",
                 rng: random.Random | None = None):
        if not len(endpoints):
            raise ValueError("EtcdClient needs at least one endpoint")
        self.names = sorted(endpoints)
        self.gateways = {n: Gateway(endpoints.port(n, MAIN), timeout) for n in self.names}
        self.timeout = timeout
        self.serializable = read_consistency == "serializable"
        self.mode = endpoint_mode
        self.rng = rng or random.Random()
        self.home = self.rng.choice(self.names)

    # --- routing ------------------------------------------------------------------------

    def _order(self, op: Mapping[str, Any]) -> list[str]:
        """Members to try in order; the next one only when the previous was never reached."""
        if op.get("node") in self.gateways:
            return [op["node"]]
        if self.mode == "one":
            return [self.home]
        first = self.rng.choice(self.names)
        return [first] + [n for n in self.names if n != first]

    def _call(self, op: Mapping[str, Any], path: str,
              body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """(member, answer); raises NotSent when no member could be reached, else _Failed
        naming the member the request went to and what went wrong (NoAnswer or EtcdError)."""
        errors = []
        for node in self._order(op):
            try:
                return node, self.gateways[node].call(path, body)
            except NotSent as exc:
                errors.append(str(exc))
            except (NoAnswer, EtcdError) as exc:
                raise _Failed(node, exc) from exc
        raise NotSent("; ".join(errors))

    # --- the Client protocol ------------------------------------------------------------

    def invoke(self, op: Mapping[str, Any]) -> dict[str, Any]:
        f = op["f"]
        try:
            path, body = self._request(op)
        except (TypeError, ValueError) as exc:
            return {"type": "fail", "error": f"unsupported op {f!r}: {exc}"}
        try:
            node, answer = self._call(op, path, body)
        except NotSent as exc:
            return {"type": "fail", "error": f"not sent: {exc}"}
        except _Failed as failed:
            err = failed.error
            if isinstance(err, EtcdError) and (f in READS or refused(err)):
                return {"type": "fail", "node": failed.node, "error": err.message}
            if f in READS:
                return {"type": "fail", "node": failed.node, "error": f"read unanswered: {err}"}
            text = err.message if isinstance(err, EtcdError) else str(err)
            return {"type": "info", "node": failed.node, "error": f"indeterminate: {text}"}
        header = answer.get("header", {})
        meta = {"term": int(header.get("raft_term") or 0),
                "revision": int(header.get("revision") or 0)}
        done: dict[str, Any] = {"type": "ok", "node": node, "meta": meta}
        kvs = answer.get("kvs") or []
        if f == "read":
            done["value"] = int(unb64(kvs[0].get("value"))) if kvs else None
        elif f == "read-set":
            plen = len(set_prefix(op.get("key")))
            done["value"] = sorted(int(unb64(kv["key"])[plen:]) for kv in kvs)
        elif f == "cas" and not answer.get("succeeded"):
            return {"type": "fail", "node": node, "meta": meta, "error": "cas: value differs"}
        else:
            done["value"] = op.get("value")
        return done

    def _request(self, op: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The gateway path and JSON body for `op` (ValueError for an op it does not know)."""
        f, key = op["f"], op.get("key")
        value: Any = op.get("value")
        if f in ("write", "cas", "add") and value is None:
            raise ValueError(f"{f} needs a value")
        serializable = self.serializable or op.get("node") is not None
        if f == "read":
            return "/v3/kv/range", {"key": b64(register_key(key)), "serializable": serializable}
        if f == "write":
            return "/v3/kv/put", {"key": b64(register_key(key)), "value": b64(str(int(value)))}
        if f == "cas":
            expected, new = value
            k = b64(register_key(key))
            cmp = ({"key": k, "result": "EQUAL", "target": "CREATE", "create_revision": "0"}
                   if expected is None else
                   {"key": k, "result": "EQUAL", "target": "VALUE",
                    "value": b64(str(int(expected)))})
            return "/v3/kv/txn", {"compare": [cmp], "success": [
                {"request_put": {"key": k, "value": b64(str(int(new)))}}]}
        if f == "add":
            return "/v3/kv/put", {"key": b64(set_prefix(key) + str(int(value)))}
        if f == "read-set":
            prefix = set_prefix(key)
            return "/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix_end(prefix)),
                                    "keys_only": True, "serializable": serializable}
        raise ValueError("the etcd client knows read, write, cas, add and read-set")

    def close(self) -> None:
        for gw in self.gateways.values():
            gw.close()
