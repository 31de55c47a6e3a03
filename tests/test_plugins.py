"""Target loading: by name, by module:attr, by file path; clear errors for bad references."""
from __future__ import annotations

import pytest

from chaos import plugins
from chaos.errors import BadInput

USER_TARGET = '''
from chaos.target import OptionSpec

class MyTarget:
    name = "mine"
    options = {"mode": OptionSpec("a", "the mode", choices=("a", "b")),
               "n": OptionSpec(3, "a number", type=int)}
    workloads = frozenset({"register"})
    supports_mesh = True
    def start_command(self, node): return ["true"]
    def client(self, nodes, options): return None
    def status(self, node, addr, timeout): return {}
'''


def test_unknown_target_names_the_known_ones():
    with pytest.raises(BadInput, match="unknown target 'nope'.*kvlite"):
        plugins.resolve_ref("nope")


def test_target_from_file_and_options(tmp_path):
    f = tmp_path / "my_target.py"
    f.write_text(USER_TARGET)
    t = plugins.load_target(plugins.resolve_ref(str(f)))
    assert t.name == "mine"
    assert plugins.parse_target_options(t, ["mode=b", "n=5"]) == {"mode": "b", "n": 5}
    assert plugins.parse_target_options(t, []) == {"mode": "a", "n": 3}
    with pytest.raises(BadInput, match="-O mode=c: must be one of a, b"):
        plugins.parse_target_options(t, ["mode=c"])
    with pytest.raises(BadInput, match="-O bogus: unknown option"):
        plugins.parse_target_options(t, ["bogus=1"])
    with pytest.raises(BadInput, match="expected key=value"):
        plugins.parse_target_options(t, ["mode"])
    with pytest.raises(BadInput, match="-O n=x"):
        plugins.parse_target_options(t, ["n=x"])


def test_bad_target_files(tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        plugins.resolve_ref(str(tmp_path / "missing.py"))
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(BadInput, match="import failed: RuntimeError: boom"):
        plugins.load_target(str(broken))
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(BadInput, match="exactly one target class"):
        plugins.load_target(str(empty))
