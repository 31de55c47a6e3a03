"""Finding targets and holding them to the contract: built-ins, entry points or a file path.

A target reference is either a registered name ("kvlite"), an entry-point style
"module:attr", or a path to a Python file ("./my_target.py") defining `TARGET` (an instance) or
exactly one target class (one with `status` and `client`, and `services` or `start_command`).
The reference string is what worker processes receive, so they can load the same target in a
fresh interpreter.

Whatever is loaded goes through `with_defaults` (every optional member of chaos.target.Target
filled in from BaseTarget) and `validate` (every problem listed), so the rest of chaos uses a
target's members directly and a broken plugin is one BadInput before anything starts.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, Iterator

from chaos.errors import BadInput, ChaosError, SetupError
from chaos.target import MAIN, BaseTarget, Membership, OptionSpec, Target

GROUP = "chaos.targets"
#: Built-ins, also reachable when the package is used from a source tree without installing.
BUILTIN = {"kvlite": "targets.kvlite.plugin:KvliteTarget",
           "etcd": "targets.etcd.plugin:EtcdTarget",
           "redis": "targets.redis.plugin:RedisTarget",
           "postgres": "targets.postgres.plugin:PostgresTarget"}
#: where nodes can run (chaos.runtime.<name>); a target's default_runtime is one of them
RUNTIMES = ("local", "docker", "ssh")
#: BaseTarget's optional data members and hooks, filled in by `with_defaults`
_DATA = ("options", "workloads", "ports", "packages", "binaries", "controller_modules",
         "supports_mesh", "default_runtime", "startup_timeout", "setup_before_leader",
         "faults", "membership")
#: the longest start-up leader wait a target may ask for (seconds)
MAX_STARTUP_TIMEOUT = 3600.0
_METHODS = ("validate_options", "services", "setup_cluster", "teardown_cluster",
            "before_final_reads", "check_cluster")
#: method -> the positional arguments the controller calls it with (checked by `validate`)
_SIGNATURES = {"client": ("endpoints", "options"), "status": ("node", "endpoints", "timeout"),
               "services": ("node",), "validate_options": ("raw",),
               "setup_cluster": ("cluster",), "teardown_cluster": ("cluster",),
               "before_final_reads": ("cluster", "timeout"),
               "check_cluster": ("options", "nodes")}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


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


# -- the default option validator ----------------------------------------------------------

def _convert(key: str, value: Any, spec: OptionSpec) -> Any:
    """One option's raw value (a string from -O, or an already typed one) -> its typed value."""
    allowed = (f"; allowed: {', '.join(map(str, spec.choices))}" if spec.choices else "")
    if spec.choices is not None:
        for choice in spec.choices:
            if value == choice or str(value) == str(choice):
                return choice
        raise BadInput(f"-O {key}={value}: must be one of {', '.join(map(str, spec.choices))}")
    if spec.type is bool:
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise BadInput(f"-O {key}={value}: expected a bool (true/false, yes/no, 1/0)")
    if isinstance(value, spec.type) and not (spec.type is int and isinstance(value, bool)):
        return value
    try:
        return spec.type(value)
    except (TypeError, ValueError):
        article = "an" if spec.type.__name__[:1] in "aeiou" else "a"
        raise BadInput(f"-O {key}={value}: expected {article} {spec.type.__name__}"
                       f"{allowed}") from None


def _bounds(key: str, raw: Any, value: Any, spec: OptionSpec) -> None:
    if spec.min is not None and value < spec.min:
        raise BadInput(f"-O {key}={raw}: must be >= {spec.min:g}"
                       + (f" and <= {spec.max:g}" if spec.max is not None else ""))
    if spec.max is not None and value > spec.max:
        raise BadInput(f"-O {key}={raw}: must be <= {spec.max:g}"
                       + (f" and >= {spec.min:g}" if spec.min is not None else ""))
    if spec.check is not None:
        problem = spec.check(value)
        if problem:
            raise BadInput(f"-O {key}={raw}: {problem}")


def validate_options_default(target: Any, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Typed options with defaults from `target.options`; BadInput naming the option.

    Applies, per OptionSpec: unknown names (listing the known ones), `choices` (the typed
    choice is returned), `type` (bool accepts true/false, yes/no, on/off, 1/0), `min`/`max`
    (inclusive) and `check`. Raw values may already be typed (a replayed config.json).
    """
    specs: Mapping[str, OptionSpec] = getattr(target, "options", {}) or {}
    name = getattr(target, "name", "?")
    unknown = sorted(set(raw) - set(specs))
    if unknown:
        raise BadInput(f"-O {unknown[0]}: unknown option for target {name}; "
                       f"known: {', '.join(sorted(specs)) or 'none'}")
    opts: dict[str, Any] = {k: s.default for k, s in specs.items()}
    for key, value in raw.items():
        spec = specs[key]
        typed = _convert(key, value, spec)
        _bounds(key, value, typed, spec)
        opts[key] = typed
    return opts


def parse_target_options(target: Target, pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Turn `-O key=value` strings into validated options (target defaults filled in)."""
    raw: dict[str, str] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"-O {item!r}: expected key=value")
        raw[key.strip()] = value.strip()
    with blame(target, "validate_options", BadInput):
        return dict(target.validate_options(raw))


@contextlib.contextmanager
def blame(target: Any, method: str, error: type[ChaosError] = SetupError) -> Iterator[None]:
    """Report an exception escaping a target's `method` as the target's bug, in one line.

    A target method that raises something other than a chaos.errors exception (a ValueError
    in validate_options, a KeyError from a typo in services) is not a chaos bug: it becomes
    `error` ("target logship: validate_options raised ValueError: ..."), BadInput (exit 4)
    for what is checked before anything starts, SetupError (exit 3) for start-up and setup
    hooks. A SetupError the target raised itself gets the method named in front.
    """
    name = getattr(target, "name", None) or type(target).__name__
    try:
        yield
    except SetupError as exc:
        if str(exc).startswith(f"target {name}"):
            raise
        raise SetupError(f"target {name}: {method}: {exc}") from exc
    except ChaosError:
        raise
    except Exception as exc:  # noqa: BLE001 - the target's own bug, named as such
        raise error(f"target {name}: {method} raised {type(exc).__name__}: {exc}") from exc


# -- defaults and validation of a plugin object ---------------------------------------------

def _fault_problems(faults: Any) -> list[str]:
    """Target.faults must be a set of optional fault kinds (chaos.faults)."""
    from chaos.faults import FAULTS

    if isinstance(faults, str) or not isinstance(faults, (set, frozenset, tuple, list)):
        return [f"faults must be a frozenset of fault kinds, got {faults!r:.80}"]
    optional = sorted(k for k, f in FAULTS.items() if f.optional)
    return [f"faults lists {k!r}, which is not an optional fault kind (those are: "
            f"{', '.join(optional)})" for k in faults if k not in optional]


def with_defaults(obj: Any) -> Any:
    """`obj` with every optional Target member it lacks set from BaseTarget's default.

    A BaseTarget subclass is returned as it is. Otherwise missing data members are set on the
    instance and missing hooks are bound to it (functools.partial, so the object still
    pickles for worker processes): afterwards every member of the contract exists, and no
    caller needs getattr fallbacks.
    """
    if isinstance(obj, BaseTarget):
        return obj
    for member in _DATA:
        if not hasattr(obj, member):
            default = getattr(BaseTarget, member)
            setattr(obj, member, dict(default) if isinstance(default, Mapping) else default)
    for member in _METHODS:
        if not hasattr(obj, member):
            setattr(obj, member, functools.partial(getattr(BaseTarget, member), obj))
    if not hasattr(obj, "start_command"):
        obj.start_command = functools.partial(BaseTarget.start_command, obj)
    return obj


def _signature_problem(name: str, fn: Any) -> str | None:
    expected = _SIGNATURES.get(name)
    if expected is None:
        return None
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # a builtin or C callable: cannot tell, let it be
    try:
        sig.bind(*expected)
    except TypeError:
        return f"{name}{sig} cannot be called as {name}({', '.join(expected)})"
    return None


def _uses_default_services(target: Any) -> bool:
    services = getattr(target, "services", None)
    func = getattr(services, "__func__", None) or getattr(services, "func", None)
    return func is BaseTarget.services


def _has_start_command(target: Any) -> bool:
    start = getattr(target, "start_command", None)
    func = getattr(start, "__func__", None) or getattr(start, "func", None)
    return callable(start) and func is not BaseTarget.start_command


def _option_problems(options: Any) -> list[str]:
    if not isinstance(options, Mapping):
        return [f"options must be a mapping of name -> OptionSpec, got {type(options).__name__}"]
    problems = []
    for key, spec in options.items():
        if not isinstance(spec, OptionSpec):
            problems.append(f"option {key!r} is a {type(spec).__name__}, not a "
                            "chaos.target.OptionSpec")
            continue
        if spec.choices is not None and spec.default not in spec.choices:
            problems.append(f"option {key!r}: default {spec.default!r} is not one of its "
                            f"choices ({', '.join(map(str, spec.choices))})")
        if not isinstance(spec.type, type):
            problems.append(f"option {key!r}: type must be a type (str, int, float, bool)")
    return problems


def _port_problems(ports: Any) -> list[str]:
    if not isinstance(ports, Mapping):
        return [f"ports must be a mapping of port name -> number, got {type(ports).__name__}"]
    problems = []
    if MAIN not in ports:
        problems.append(f"ports {dict(ports)} have no {MAIN!r} port (the one clients and the "
                        "monitor use)")
    for pname, number in ports.items():
        if not isinstance(pname, str) or not isinstance(number, int) or isinstance(number, bool) \
                or not 1 <= number <= 65535:
            problems.append(f"port {pname!r}: {number!r} is not a port number (1-65535)")
    numbers = [n for n in ports.values() if isinstance(n, int)]
    if len(set(numbers)) != len(numbers):
        problems.append(f"ports {dict(ports)}: two names share one number")
    return problems


def _str_mapping(member: str, value: Any, what: str) -> list[str]:
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return [f"{member} must map {what} (str -> str), got {value!r:.80}"]
    return []


def _module_problems(modules: Mapping[str, str]) -> list[str]:
    problems = []
    for module, requirement in modules.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            problems.append(f"the controller needs Python module {module!r}: "
                            f"pip install {requirement!r}")
    return problems


def validate(target: Any) -> list[str]:
    """Every problem of a target object against the contract (empty: it is a valid target).

    Run by `load_target` on every plugin after `with_defaults`; also usable by a target's own
    tests. Checks members and their types, method signatures, options, ports, declared
    workloads and runtime, and that the controller-side modules import.
    """
    from workloads import NAMES as WORKLOADS

    problems: list[str] = []
    name = getattr(target, "name", None)
    if not isinstance(name, str) or not name:
        problems.append(f"name must be a non-empty str, got {name!r:.40}")
    for member in ("client", "status"):
        fn = getattr(target, member, None)
        if fn is None:
            problems.append(f"missing method {member}({', '.join(_SIGNATURES[member])})")
        elif not callable(fn):
            problems.append(f"{member} is not callable")
    if _uses_default_services(target) and not _has_start_command(target):
        problems.append("define services(node) -> [Service, ...] or start_command(node) -> argv")
    for member in _SIGNATURES:
        fn = getattr(target, member, None)
        if fn is not None and not callable(fn) and member not in ("client", "status"):
            problems.append(f"{member} is not callable")
        elif callable(fn) and not isinstance(fn, functools.partial):
            problem = _signature_problem(member, fn)
            if problem:
                problems.append(problem)
    problems += _option_problems(getattr(target, "options", {}))
    problems += _port_problems(getattr(target, "ports", {}))
    workloads: Any = getattr(target, "workloads", frozenset())
    if isinstance(workloads, str) or not isinstance(workloads, (set, frozenset, tuple, list)):
        problems.append(f"workloads must be a set of workload names, got {workloads!r:.60}")
    else:
        unknown = sorted(str(w) for w in workloads if w not in WORKLOADS)
        if unknown:
            problems.append(f"unknown workload(s) {', '.join(unknown)}; known: "
                            f"{', '.join(WORKLOADS)}")
    packages = getattr(target, "packages", ())
    if isinstance(packages, str) or not isinstance(packages, (tuple, list)) or not all(
            isinstance(p, str) and p for p in packages):
        problems.append(f"packages must be a tuple of Debian package names, got {packages!r:.80}")
    problems += _str_mapping("binaries", getattr(target, "binaries", {}),
                             "executable -> Debian package")
    modules = getattr(target, "controller_modules", {})
    module_problems = _str_mapping("controller_modules", modules, "module -> pip requirement")
    problems += module_problems or _module_problems(modules)
    if not isinstance(getattr(target, "supports_mesh", True), bool):
        problems.append("supports_mesh must be True or False")
    if not isinstance(getattr(target, "setup_before_leader", False), bool):
        problems.append("setup_before_leader must be True or False")
    problems += _fault_problems(getattr(target, "faults", frozenset()))
    membership = getattr(target, "membership", None)
    if membership is not None and not isinstance(membership, Membership):
        problems.append(f"membership must be None or an object with members, remove_member "
                        f"and add_member (chaos.target.Membership), got {membership!r:.60}")
    wait = getattr(target, "startup_timeout", 30.0)
    if (isinstance(wait, bool) or not isinstance(wait, (int, float))
            or not 0 < wait <= MAX_STARTUP_TIMEOUT):
        problems.append(f"startup_timeout must be a number of seconds in (0, "
                        f"{MAX_STARTUP_TIMEOUT:g}], got {wait!r:.40}")
    runtime = getattr(target, "default_runtime", "local")
    if runtime not in RUNTIMES:
        problems.append(f"default_runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")
    return problems


# -- loading -------------------------------------------------------------------------------

def _instantiate(obj: Any, where: str) -> Target:
    try:
        target = obj() if inspect.isclass(obj) else obj
    except Exception as exc:  # the user's constructor: report, don't crash
        raise BadInput(f"--target {where}: {getattr(obj, '__name__', obj)}() failed: "
                       f"{type(exc).__name__}: {exc}") from exc
    try:
        target = with_defaults(target)
    except (AttributeError, TypeError) as exc:
        raise BadInput(f"--target {where}: not a target object ({exc})") from exc
    problems = validate(target)
    if problems:
        raise BadInput(f"--target {where}: not a valid target ({len(problems)} problem"
                       f"{'s' if len(problems) > 1 else ''}): {'; '.join(problems)}")
    return target


def _is_target_class(cls: type) -> bool:
    if issubclass(cls, BaseTarget):
        return cls is not BaseTarget
    return (hasattr(cls, "status") and hasattr(cls, "client")
            and (hasattr(cls, "services") or hasattr(cls, "start_command")))


def _exec_file(ref: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"chaos_user_target_{abs(hash(ref))}", ref)
    if spec is None or spec.loader is None:
        raise BadInput(f"--target: cannot import {ref}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except SystemExit as exc:
        del sys.modules[spec.name]
        raise BadInput(f"--target {ref}: the file called exit({exc.code!r}) when imported "
                       "(guard its main code with `if __name__ == \"__main__\":`)") from None
    except Exception as exc:  # the user's file: report, don't crash
        del sys.modules[spec.name]
        raise BadInput(f"--target {ref}: import failed: {type(exc).__name__}: {exc}") from exc
    return module


def load_target(ref: str) -> Target:
    """Load a target from a reference produced by `resolve_ref`, filled in and validated."""
    if ref.endswith(".py"):
        module = _exec_file(ref)
        if hasattr(module, "TARGET"):
            return _instantiate(module.TARGET, ref)
        classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
                   if c.__module__ == module.__name__ and _is_target_class(c)]
        if len(classes) != 1:
            raise BadInput(f"--target {ref}: define TARGET or exactly one target class "
                           f"(found {len(classes)}: {', '.join(c.__name__ for c in classes)})")
        return _instantiate(classes[0], ref)
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
        obj = getattr(module, attr) if attr else module
    except (ImportError, AttributeError) as exc:
        raise BadInput(f"--target: cannot load {ref}: {exc}") from exc
    except SystemExit as exc:
        raise BadInput(f"--target {ref}: the module called exit({exc.code!r}) when imported") \
            from None
    except Exception as exc:  # the user's module: report, don't crash
        raise BadInput(f"--target {ref}: import failed: {type(exc).__name__}: {exc}") from exc
    return _instantiate(obj, ref)
