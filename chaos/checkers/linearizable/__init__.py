"""Linearizability checking (DESIGN §5): per-key Wing & Gong / Lowe search with a budget.

Public API: `LINEARIZABLE` (the checker object), `check_linearizable(history, opts)`, the
models (`REGISTER`, `KV`, `Model`) and `LinearizableChecker`.
"""
from __future__ import annotations

from typing import Any, Mapping

from chaos.checkers.base import CheckResult
from chaos.checkers.linearizable.checker import LinearizableChecker
from chaos.checkers.linearizable.models import KV, MODELS, REGISTER, Model
from chaos.history.model import History

LINEARIZABLE = LinearizableChecker()


def check_linearizable(history: History, opts: Mapping[str, Any] | None = None) -> CheckResult:
    """Check `history` for linearizability per key (options: see checker module doc)."""
    return LINEARIZABLE.check(history, opts)


__all__ = ["KV", "LINEARIZABLE", "MODELS", "REGISTER", "LinearizableChecker", "Model",
           "check_linearizable"]
