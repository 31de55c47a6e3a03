"""The target contract as enforced at load time: defaults, option validation, validate()
listing every problem, status checking, and the no-op target."""
from __future__ import annotations

import pickle
import textwrap

import pytest

from chaos import plugins
from chaos.errors import BadInput
from chaos.target import (MAIN, Addr, BaseTarget, Endpoints, NodeConfig, NoopTarget, OptionSpec,
                          Service, StatusError, check_status, term_key)

MINIMAL = '''
class Mini:
    name = "mini"
    def start_command(self, node):
        return ["sleep", "60"]
    def client(self, endpoints, options):
        return None
    def status(self, node, endpoints, timeout):
        return {"role": "leader", "term": 1, "leader": node}
'''


def _write(tmp_path, text, name="t.py"):
    f = tmp_path / name
    f.write_text(textwrap.dedent(text))
    return str(f)


def _cfg(**kw):
    return NodeConfig("n1", Addr("127.0.0.1", 7000), {}, "/tmp/n1", **kw)


def test_with_defaults_fills_a_plain_class(tmp_path):
    t = plugins.load_target(_write(tmp_path, MINIMAL))
    assert not isinstance(t, BaseTarget)
    assert t.ports == {MAIN: 7000} and t.packages == () and t.default_runtime == "local"
    assert t.workloads == {"register", "set"} and t.supports_mesh is True
    assert [s.name for s in t.services(_cfg())] == [MAIN]
    assert t.services(_cfg())[0].argv == ["sleep", "60"]
    assert t.validate_options({}) == {}
    assert t.setup_cluster(None) is None and t.before_final_reads(None, 1.0) is None
    pickle.loads(pickle.dumps(t))  # worker processes may receive it pickled


def test_default_option_validator_names_option_and_allowed_values():
    class T(BaseTarget):
        name = "t"
        options = {"mode": OptionSpec("a", "m", choices=("a", "b")),
                   "n": OptionSpec(3, "n", type=int, min=1, max=9),
                   "on": OptionSpec(False, "flag", type=bool),
                   "odd": OptionSpec(1, "odd", type=int,
                                     check=lambda v: None if v % 2 else "must be odd")}
    t = T()
    assert t.validate_options({"n": "5", "on": "yes"}) == {"mode": "a", "n": 5, "on": True,
                                                          "odd": 1}
    assert t.validate_options({"n": 4})["n"] == 4   # already typed (replayed config)
    for raw, msg in [({"mode": "c"}, "-O mode=c: must be one of a, b"),
                     ({"n": "x"}, "-O n=x: expected an int"),
                     ({"n": "0"}, "-O n=0: must be >= 1 and <= 9"),
                     ({"n": "10"}, "-O n=10: must be <= 9"),
                     ({"on": "maybe"}, "-O on=maybe: expected a bool"),
                     ({"odd": "2"}, "-O odd=2: must be odd"),
                     ({"zz": "1"}, "-O zz: unknown option for target t; known: mode, n, odd, on")]:
        with pytest.raises(BadInput, match=msg):
            t.validate_options(raw)


BROKEN = '''
from chaos.target import OptionSpec

class Broken:
    name = ""
    options = {"a": 3, "b": OptionSpec("x", "b", choices=("y", "z"))}
    ports = {"peer": 7001, "api": 99999}
    workloads = {"register", "queue"}
    packages = "redis-server"
    default_runtime = "kubernetes"
    controller_modules = {"no_such_module_xyz": "no-such-module>=1"}
    status = 5
    def client(self, endpoints):
        return None

TARGET = Broken()
'''


def test_validate_lists_every_problem_at_once(tmp_path):
    with pytest.raises(BadInput) as err:
        plugins.load_target(_write(tmp_path, BROKEN))
    msg = str(err.value)
    assert "\n" not in msg and "not a valid target" in msg
    for part in ["name must be a non-empty str", "status is not callable",
                 "define services(node)", "client(endpoints) cannot be called as "
                 "client(endpoints, options)", "option 'a' is a int, not a chaos.target.OptionSpec",
                 "option 'b': default 'x' is not one of its choices",
                 "have no 'main' port", "port 'api': 99999 is not a port number",
                 "unknown workload(s) queue", "packages must be a tuple",
                 "default_runtime 'kubernetes'",
                 "pip install 'no-such-module>=1'"]:
        assert part in msg, part


def test_a_correct_target_has_no_problems():
    assert plugins.validate(NoopTarget()) == []
    assert plugins.validate(plugins.load_target(plugins.resolve_ref("kvlite"))) == []


def test_target_file_calling_exit_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match=r"called exit\(0\) when imported"):
        plugins.load_target(_write(tmp_path, "import sys\nsys.exit(0)\n"))


def test_two_target_classes_are_ambiguous(tmp_path):
    text = MINIMAL + MINIMAL.replace("class Mini", "class Mini2")
    with pytest.raises(BadInput, match="exactly one target class.*Mini, Mini2"):
        plugins.load_target(_write(tmp_path, text))


def test_check_status_accepts_orderable_terms_and_names_a_bad_key():
    assert check_status("n1", {"role": "leader"}) == {"role": "leader", "term": None,
                                                     "leader": None}
    for term in (3, "0000000a", [2, 5], None):
        assert check_status("n1", {"role": "follower", "term": term,
                                   "leader": "n2"})["term"] == term
    assert check_status("n1", {"role": "replica", "term": (1, 2)})["term"] == [1, 2]
    assert check_status("n1", {"role": "leader", "x": {"y": 1}})["x"] == {"y": 1}
    for status, key in [({"role": "master"}, "'role' = 'master'"),
                        ({}, "'role' = None"),
                        ({"role": "leader", "term": {"a": 1}}, "'term' = {'a': 1}"),
                        ({"role": "leader", "term": True}, "'term' = True"),
                        ({"role": "leader", "term": [1, "a"]}, "'term'"),
                        ({"role": "leader", "leader": 3}, "'leader' = 3"),
                        (["leader"], "expected a dict")]:
        with pytest.raises(StatusError, match=f"status of n1: .*{key}" if key[0] != "e"
                           else key):
            check_status("n1", status)


def test_term_key_orders_each_kind():
    assert sorted([3, 1, 2], key=term_key) == [1, 2, 3]
    assert sorted([[1, 9], [2, 0], [1, 10]], key=term_key) == [[1, 9], [1, 10], [2, 0]]
    assert sorted([None, 5, "a"], key=term_key) == [None, 5, "a"]  # mixed: never raises


def test_noop_target_status_is_valid_and_names_one_leader():
    ends = Endpoints.main_only({"n1": Addr("h", 1), "n2": Addr("h", 2)})
    t = NoopTarget()
    roles = [check_status(n, t.status(n, ends, 1.0))["role"] for n in ends]
    assert roles == ["leader", "follower"]
    assert t.services(_cfg()) == [Service(MAIN, ["sleep", "86400"], ready_port=None)]
    assert t.client(ends, {}).invoke({"f": "write", "value": 3}) == {"type": "ok", "value": 3}


def test_chaos_run_defaults_to_the_targets_runtime(tmp_path):
    from chaos.run import RunConfig, prepare

    f = _write(tmp_path, MINIMAL.replace('name = "mini"',
                                         'name = "mini"\n    default_runtime = "docker"'))
    cfg = RunConfig(target=f, nemesis=[], time_limit=5, store=str(tmp_path))
    prepare(cfg)
    assert cfg.runtime == "docker"
    cfg = RunConfig(target=f, runtime="local", nemesis=[], time_limit=5, store=str(tmp_path))
    prepare(cfg)
    assert cfg.runtime == "local"


def test_prepare_checks_options_against_the_cluster_size(tmp_path):
    """check_cluster runs in prepare, before anything starts, with the node names."""
    from chaos.run import RunConfig, prepare

    hook = ('\n    def check_cluster(self, options, nodes):\n'
            '        if len(nodes) < 5:\n'
            '            raise BadInput(f"-O need=5: only {len(nodes)} nodes")\n')
    body = MINIMAL.replace('name = "mini"', 'name = "mini"' + hook)
    f = _write(tmp_path, "from chaos.errors import BadInput\n" + body)
    with pytest.raises(BadInput, match="only 3 nodes"):
        prepare(RunConfig(target=f, runtime="local", nemesis=[], time_limit=5,
                          store=str(tmp_path)))
    cfg = RunConfig(target=f, runtime="local", nodes=5, nemesis=[], time_limit=5,
                    store=str(tmp_path))
    prepare(cfg)
    assert not (tmp_path / "mini-register-none").exists()  # nothing started or written


class _Source:
    def __init__(self):
        self.ops = []

    def record(self, op):
        self.ops.append(op)
        return op


def test_monitor_records_a_bad_status_naming_the_key_and_orders_any_term():
    from chaos.monitor import Monitor

    class T(NoopTarget):
        answers = {"n1": {"role": "master"}, "n2": {"role": "leader", "term": "0000000b"},
                   "n3": {"role": "leader", "term": "0000000a"}}

        def status(self, node, endpoints, timeout):
            assert isinstance(endpoints, Endpoints)
            return self.answers[node]

    src = _Source()
    ends = {n: Addr("127.0.0.1", 1) for n in ("n1", "n2", "n3")}
    m = Monitor(T(), ends, src)
    m.poll_once()
    bad = [o for o in src.ops if o["node"] == "n1" and o["type"] != "invoke"]
    assert bad[0]["type"] == "info" and "bad status" in bad[0]["error"]
    assert "'role' = 'master'" in bad[0]["error"]
    assert m.leader() == "n2" and m.latest["n1"] is None     # str terms compare
    T.answers["n3"] = {"role": "leader", "term": [3, 1]}
    T.answers["n2"] = {"role": "leader", "term": [2, 9]}
    m.poll_once()
    assert m.leader() == "n3"


BAD_STATUS = '''
from chaos.target import NoopTarget

class BadStatus(NoopTarget):
    name = "bad-status"
    def status(self, node, endpoints, timeout):
        return {"role": "primary", "term": 1}
'''


@pytest.mark.integration
def test_a_bad_status_at_start_up_is_a_setup_error_naming_the_key(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    f = _write(tmp_path, BAD_STATUS)
    proc = subprocess.run([sys.executable, "-m", "chaos", "run", "--target", f, "--nemesis", "",
                           "--time-limit", "2", "--store", str(tmp_path / "store")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "status of n1: key 'role' = 'primary'" in proc.stderr
    assert "Traceback" not in proc.stderr
