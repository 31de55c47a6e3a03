"""The store: one directory per run, `store/<test>/<timestamp>/`, and `latest` links.

A run directory holds history.jsonl, results.json, report.html, config.json (all that is
needed to replay: seed, options, the exact fault schedule, versions) and nodes/<node>/ logs.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from chaos.errors import BadInput


def check_store(store: str | os.PathLike[str]) -> None:
    """Raise BadInput (naming --store) unless run directories can be created under `store`.

    Creates nothing: the nearest existing ancestor must be a directory we can create entries
    in, which is checked by really creating (and removing) an anonymous temporary file there,
    since permission bits alone say nothing for root or on a read-only file system.
    """
    path = Path(store)
    probe = path
    while not probe.exists() and not probe.is_symlink():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        what = "it exists" if probe == path else f"{probe} exists"
        raise BadInput(f"--store {store}: not a directory ({what} and is not one)")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        where = "" if probe == path else f" ({probe})"
        raise BadInput(f"--store {store}: not writable{where}: "
                       f"{exc.strerror or exc}") from None


def check_output_file(path: str | os.PathLike[str], option: str) -> None:
    """Raise BadInput naming `option` unless a file can be written at `path` (a --junit FILE):
    checked before a run or an analysis starts, so its result is not lost at the end. The
    parent directories may be missing (they are created); nothing is created here."""
    out = Path(path)
    if out.is_dir():
        raise BadInput(f"{option} {path}: is a directory (give a file name)")
    try:
        check_store(out.parent)
    except BadInput as exc:
        raise BadInput(f"{option} {path}: " + str(exc).split(": ", 1)[1]) from None


def new_run_dir(store: str | os.PathLike[str], test_name: str) -> Path:
    """Create store/<test>/<UTC timestamp>/ (unique) and point the latest links at it.

    A store that cannot hold it is bad input naming --store (BadInput), not a crash.
    """
    base = Path(store) / test_name
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"--store {store}: cannot create {base}: {exc.strerror or exc}") from None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    run = base / stamp
    n = 1
    while True:
        try:
            run.mkdir()
            break
        except FileExistsError:
            n += 1
            run = base / f"{stamp}-{n}"
        except OSError as exc:
            raise BadInput(f"--store {store}: cannot create {run}: {exc.strerror or exc}") from None
    links = ((base / "latest", run.name), (Path(store) / "latest", f"{test_name}/{run.name}"))
    for link, target in links:
        tmp = link.with_name(f".latest.{os.getpid()}")
        try:
            if tmp.is_symlink():
                tmp.unlink()
            tmp.symlink_to(target)
            os.replace(tmp, link)
        except OSError:
            pass
    return run


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (tmp + rename): a crash never leaves half a results.json."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(dumps_json(data, indent=True))
    os.replace(tmp, path)


def dumps_json(obj: Any, indent: bool = False) -> bytes:
    """JSON bytes for results documents: orjson, with the stdlib for what orjson refuses
    (integers beyond 64 bits, which imported histories may carry)."""
    opt = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
    if indent:
        opt |= orjson.OPT_INDENT_2
    try:
        return orjson.dumps(obj, option=opt, default=json_default)
    except TypeError:
        return json.dumps(_str_keys(obj), indent=2 if indent else None,
                          default=json_default).encode()


def json_default(obj: Any) -> Any:
    """How non-JSON values in results are written: checker results as dicts, sets sorted."""
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    return str(obj)


def _str_keys(obj: Any) -> Any:
    """Make every dict key a string (the stdlib json refuses tuple keys and the like)."""
    if isinstance(obj, dict):
        return {k if isinstance(k, str) else str(k): _str_keys(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_str_keys(v) for v in obj]
    return obj


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def versions() -> dict[str, str]:
    """Versions recorded in config.json, so a replay can tell what changed."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0], "platform": platform.platform(),
           "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for pkg in ("chaos", "pandas", "toxiproxy-python", "docker", "paramiko"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out
