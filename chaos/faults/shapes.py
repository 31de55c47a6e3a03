"""Partition shapes, defined once: a shape name -> groups of nodes that keep talking.

Two nodes may talk during a partition iff some group holds both; groups may overlap (bridge,
majorities-ring). Every net backend takes these groups (`partition(groups)`), the schedule
draws shape names from `SHAPES`, and client placement cuts a placed client's links along the
same groups.
"""
from __future__ import annotations

import random
import re
from typing import Any

from chaos.errors import BadInput

#: every shape, the default (isolate-leader) first; `--partition-shape mixed` draws from these
SHAPES = ("isolate-leader", "isolate-one", "halves", "random-halves", "majorities-ring", "bridge",
          "minority-third", "primaries")


def natural(name: str) -> list[Any]:
    """Sort key putting n2 before n10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _bisect(nodes: list[str]) -> list[list[str]]:
    half = len(nodes) // 2
    return [nodes[:half], nodes[half:]]


def partition_shape(nodes: list[str], name: str, rng: random.Random,
                    leader: str | None = None,
                    leaders: list[str] | None = None) -> list[list[str]]:
    """Groups for a named partition shape (pass them to a backend's `partition`).

    halves: [first n//2, rest] in name order; random-halves: the same after a shuffle;
    isolate-one: a random node alone; isolate-leader: `leader` alone; bridge: two halves
    sharing one node; majorities-ring: nodes on a shuffled ring, each linked to its
    neighbours within distance k = ceil((n//2)/2), returned as 2-node groups (edges): each
    node sees a majority (exactly one for n = 4, 5), and no two see the same one;
    minority-third: a random third of the nodes (at least one) cut off from the rest;
    primaries: two sides (n//2 and the rest, the bigger one drawn at random), the nodes that
    led during the run (`leaders`, most recent first) dealt to alternate sides, so each side
    holds one that was leader (when two or more ever led): old and new primaries each keep
    a following, as after a failover that did not fence the old one.
    """
    nodes = sorted(nodes, key=natural)
    if name == "minority-third":
        rng.shuffle(nodes)
        third = max(1, len(nodes) // 3)
        return [sorted(nodes[:third], key=natural), sorted(nodes[third:], key=natural)]
    if name == "primaries":
        return _primaries(nodes, rng, [n for n in leaders or [] if n in nodes])
    if name == "halves":
        return _bisect(nodes)
    if name == "random-halves":
        rng.shuffle(nodes)
        return _bisect(nodes)
    if name == "isolate-one":
        lone = rng.choice(nodes)
        return [[lone], [n for n in nodes if n != lone]]
    if name == "isolate-leader":
        if leader is None:
            raise BadInput("shape isolate-leader needs the current leader")
        if leader not in nodes:
            raise BadInput(f"unknown node {leader!r} (nodes: {', '.join(nodes)})")
        return [[leader], [n for n in nodes if n != leader]]
    if name == "bridge":
        rng.shuffle(nodes)
        half = len(nodes) // 2
        return [nodes[: half + 1], nodes[half:]]
    if name == "majorities-ring":
        rng.shuffle(nodes)
        n = len(nodes)
        k = -(-(n // 2) // 2)
        edges = {tuple(sorted((nodes[i], nodes[(i + d) % n]), key=natural))
                 for i in range(n) for d in range(1, k + 1) if nodes[i] != nodes[(i + d) % n]}
        return [list(e) for e in sorted(edges, key=lambda e: (natural(e[0]), natural(e[1])))]
    raise BadInput(f"unknown partition shape {name!r} (one of: {', '.join(SHAPES)})")


def _primaries(nodes: list[str], rng: random.Random, led: list[str]) -> list[list[str]]:
    sizes = [len(nodes) // 2, len(nodes) - len(nodes) // 2]
    rng.shuffle(sizes)
    sides: list[list[str]] = [[], []]
    for i, node in enumerate(dict.fromkeys(led)):
        side = i % 2 if len(sides[i % 2]) < sizes[i % 2] else 1 - i % 2
        if len(sides[side]) < sizes[side]:
            sides[side].append(node)
    rest = [n for n in nodes if n not in sides[0] and n not in sides[1]]
    rng.shuffle(rest)
    for node in rest:
        sides[0 if len(sides[0]) < sizes[0] else 1].append(node)
    return [sorted(s, key=natural) for s in sides]


def together(groups: list[list[str]]) -> set[tuple[str, str]]:
    """The ordered node pairs that share a group (may talk during the partition)."""
    return {(a, b) for g in groups for a in g for b in g if a != b}


def cut_pairs(nodes: list[str], groups: list[list[str]]) -> set[tuple[str, str]]:
    """The directed node pairs a partition into `groups` cuts (no group holds both ends)."""
    keep = together(groups)
    return {(a, b) for a in nodes for b in nodes if a != b and (a, b) not in keep}
