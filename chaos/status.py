"""The status contract: what a node's `Target.status` answer must hold, and how terms order.

Every status answer (the monitor's polls, the start-up leader wait, the member faults'
catch-up checks) goes through `check_status`, so a target that breaks the contract is named
with the key and the value at the first answer, not misread later. Terms are compared with
`term_key` only: the contract allows terms of several kinds (a number such as a Raft term,
an epoch or a timeline; a string; a list of ints), and one order over all of them keeps every
comparison total. chaos.target names these as part of the target contract.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: roles a status may report; anything else is a contract error naming the value
ROLES = ("leader", "follower", "candidate", "replica", "sentinel", "unknown")


class StatusError(ValueError):
    """A status answer that breaks the contract (names the node, the key and the value)."""


def _orderable_term(term: Any) -> bool:
    if term is None or isinstance(term, str):
        return True
    if isinstance(term, bool):
        return False
    if isinstance(term, (int, float)):
        return term == term  # NaN is not orderable
    if isinstance(term, (list, tuple)):
        return all(isinstance(t, int) and not isinstance(t, bool) for t in term)
    return False


def term_key(term: Any) -> tuple[int, Any]:
    """A sort key for terms of any orderable kind: None first, then numbers, strings, lists.

    Terms of one cluster are of one kind; the kind rank only keeps a mixed set orderable
    (so comparing never raises), it has no meaning of its own.
    """
    if term is None:
        return (0, 0)
    if isinstance(term, (int, float)):
        return (1, term)
    if isinstance(term, str):
        return (2, term)
    return (3, tuple(term))


def check_status(node: str, status: Any) -> dict[str, Any]:
    """`status` as the contract says it must be, or StatusError naming the key and the value.

    role: one of ROLES (required); term: None, an int/float, a str or a list of ints;
    leader: a node name or None. Missing term/leader mean None. Extra keys pass unchanged;
    a tuple term becomes a list (as it reads back from JSON).
    """
    if not isinstance(status, Mapping):
        raise StatusError(f"status of {node}: expected a dict with role/term/leader, got "
                          f"{type(status).__name__} {status!r:.80}")
    out = dict(status)
    role = out.get("role")
    if role not in ROLES:
        raise StatusError(f"status of {node}: key 'role' = {role!r:.80}; must be one of "
                          f"{', '.join(ROLES)}")
    term = out.get("term")
    if not _orderable_term(term):
        raise StatusError(f"status of {node}: key 'term' = {term!r:.80}; must be None, an "
                          "int, a str or a list of ints (an orderable value)")
    if isinstance(term, tuple):
        out["term"] = list(term)
    out.setdefault("term", None)
    leader = out.get("leader")
    if leader is not None and not isinstance(leader, str):
        raise StatusError(f"status of {node}: key 'leader' = {leader!r:.80}; must be a node "
                          "name (str) or None")
    out.setdefault("leader", None)
    return out
