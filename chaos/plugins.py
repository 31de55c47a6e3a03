"""Finding targets: built-ins and third-party ones through entry points, or a file path.

A target reference is either a registered name ("kvlite"), an entry-point style
"module:attr", or a path to a Python file ("./my_target.py") defining `TARGET` (an instance) or
exactly one class with a `start_command` method. The reference string is what worker processes
receive, so they can load the same target in a fresh interpreter.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from importlib.metadata import entry_points
from typing import Any

from chaos.errors import BadInput
from chaos.target import Target

GROUP = "chaos.targets"
#: Built-ins, also reachable when the package is used from a source tree without installing.
BUILTIN = {"kvlite": "targets.kvlite.plugin:KvliteTarget"}


def available_targets() -> dict[str, str]:
    """name -> "module:attr" for every registered target (entry points override built-ins)."""
    found = dict(BUILTIN)
    for ep in entry_points(group=GROUP):
        found[ep.name] = ep.value
    return found


def resolve_ref(name_or_path: str) -> str:
    """Turn what the user typed into a loadable reference, or raise BadInput."""
    if name_or_path.endswith(".py") or os.sep in name_or_path:
        path = os.path.abspath(name_or_path)
        if not os.path.isfile(path):
            raise BadInput(f"--target: no such file {name_or_path!r}")
        return path
    targets = available_targets()
    if name_or_path in targets:
        return targets[name_or_path]
    if ":" in name_or_path:
        return name_or_path
    raise BadInput(f"--target: unknown target {name_or_path!r}; "
                   f"known: {', '.join(sorted(targets))} (or a path to a .py file)")


def _instantiate(obj: Any, where: str) -> Target:
    target = obj() if inspect.isclass(obj) else obj
    missing = [m for m in ("name", "start_command", "client", "status") if not hasattr(target, m)]
    if missing:
        raise BadInput(f"--target {where}: not a target (missing {', '.join(missing)})")
    return target


def load_target(ref: str) -> Target:
    """Load a target from a reference produced by `resolve_ref`."""
    if ref.endswith(".py"):
        spec = importlib.util.spec_from_file_location(f"chaos_user_target_{abs(hash(ref))}", ref)
        if spec is None or spec.loader is None:
            raise BadInput(f"--target: cannot import {ref}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the user's file: report, don't crash
            raise BadInput(f"--target {ref}: import failed: {type(exc).__name__}: {exc}") from exc
        if hasattr(module, "TARGET"):
            return _instantiate(module.TARGET, ref)
        classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
                   if c.__module__ == module.__name__ and hasattr(c, "start_command")]
        if len(classes) != 1:
            raise BadInput(f"--target {ref}: define TARGET or exactly one target class "
                           f"(found {len(classes)})")
        return _instantiate(classes[0], ref)
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
        obj = getattr(module, attr) if attr else module
    except (ImportError, AttributeError) as exc:
        raise BadInput(f"--target: cannot load {ref}: {exc}") from exc
    return _instantiate(obj, ref)


def parse_target_options(target: Target, pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Turn `-O key=value` strings into validated options (target defaults filled in)."""
    raw: dict[str, str] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"-O {item!r}: expected key=value")
        raw[key.strip()] = value.strip()
    validate = getattr(target, "validate_options", None)
    if validate is not None:
        return dict(validate(raw))
    specs = getattr(target, "options", {}) or {}
    unknown = sorted(set(raw) - set(specs))
    if unknown:
        raise BadInput(f"-O {unknown[0]}: unknown option for target {target.name}; "
                       f"known: {', '.join(sorted(specs)) or 'none'}")
    opts: dict[str, Any] = {k: s.default for k, s in specs.items()}
    for k, v in raw.items():
        spec = specs[k]
        if spec.choices and v not in [str(c) for c in spec.choices]:
            raise BadInput(f"-O {k}={v}: must be one of {', '.join(map(str, spec.choices))}")
        try:
            opts[k] = spec.type(v)
        except ValueError as exc:
            raise BadInput(f"-O {k}={v}: {exc}") from exc
    return opts
