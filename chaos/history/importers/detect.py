"""Pick the reader for a history file by its content (or as told) and load it.

Auto-detection looks at the first 4 KB only, in a fixed order from the most specific format
to the most general: our JSONL (`{"`), Porcupine logs (their exact line shapes, one of which
is also valid EDN), then Jepsen EDN (`{:` / `[{:`). The file extension is never consulted:
Jepsen and Porcupine files are named .edn, .log or .txt without regard to their content.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Callable

from chaos.errors import BadInput
from chaos.history import reader
from chaos.history.model import History

#: --format values; "auto" sniffs the content.
FORMATS = ("auto", "jsonl", "jepsen-edn", "porcupine")
#: format name -> module with sniff(head) and load(path); tried in this order by "auto".
MODULES = {
    "jsonl": "chaos.history.reader",
    "porcupine": "chaos.history.importers.porcupine",
    "jepsen-edn": "chaos.history.importers.jepsen_edn",
}
HEAD_BYTES = 4096


def _loader(fmt: str) -> Callable[[str | Path], History]:
    mod = importlib.import_module(MODULES[fmt])  # late: the EDN parser only when needed
    return mod.read_history if fmt == "jsonl" else mod.load


def resolve(path: str | os.PathLike[str]) -> Path:
    """A file, or in a run directory its history.jsonl (else a history.edn)."""
    p = Path(path)
    if p.is_dir() and not (p / "history.jsonl").exists() and (p / "history.edn").is_file():
        return p / "history.edn"
    return reader.resolve_history_path(p)


def detect(path: str | os.PathLike[str]) -> str:
    """The format name of the history at `path`, by content; BadInput if none fits."""
    p = resolve(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(HEAD_BYTES).decode("utf-8", errors="replace")
    except OSError as exc:
        raise BadInput(f"cannot read: {exc.strerror}", where=str(p)) from None
    if not head.strip():
        raise BadInput("history is empty", where=str(p))
    for fmt, name in MODULES.items():
        if importlib.import_module(name).sniff(head):
            return fmt
    first = head.lstrip().splitlines()[0][:60]  # head has text: checked above
    raise BadInput(f"unrecognised history format (tried {', '.join(MODULES)}; "
                   f"file starts with {first!r})", where=str(p))


def load_any(path: str | os.PathLike[str], fmt: str = "auto") -> History:
    """Load the history at `path` (file or run dir) in format `fmt` ("auto" = by content)."""
    if fmt not in FORMATS:
        raise BadInput(f"unknown format {fmt!r} (valid: {', '.join(FORMATS)})")
    p = resolve(path)
    if fmt == "auto":
        fmt = detect(p)
    return _loader(fmt)(p)
