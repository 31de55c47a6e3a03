"""`--nemesis kill:SERVICE` / `pause:SERVICE`: one service of a node, from the CLI (parsing,
the schedule, the check against the target's service names, and a real local run)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from chaos.errors import BadInput
from chaos.schedule import make_schedule, parse_nemeses

TWO_SERVICES = '''
from chaos.target import MAIN, NoopTarget, Service

class Two(NoopTarget):
    name = "two"
    def services(self, node):
        return [Service(MAIN, ["sleep", "600"], ready_port=None),
                Service("side", ["sleep", "600"], ready_port=None)]
'''


def test_parse_accepts_a_service_for_kill_and_pause_only():
    assert parse_nemeses("kill:side,pause:side,partition") == ["kill:side", "pause:side",
                                                                 "partition"]
    with pytest.raises(BadInput, match="partition acts on links or whole nodes; only kill"):
        parse_nemeses("partition:side")
    with pytest.raises(BadInput, match="name the service after the colon"):
        parse_nemeses("kill:")
    with pytest.raises(BadInput, match="unknown nemesis 'kil'"):
        parse_nemeses("kil:side")


def test_the_schedule_carries_the_service():
    specs = make_schedule(["kill:side"], interval=1, time_limit=4, seed=1)
    assert specs and all(s.kind == "kill" and s.params["service"] == "side" for s in specs)
    whole = make_schedule(["kill"], interval=1, time_limit=4, seed=1)
    assert all("service" not in s.params for s in whole)


def _run(tmp_path, nemesis: str) -> subprocess.CompletedProcess[str]:
    from tests.conftest import REPO

    f = tmp_path / "two.py"
    f.write_text(textwrap.dedent(TWO_SERVICES))
    return subprocess.run(
        [sys.executable, "-m", "chaos", "run", "--target", str(f), "--nemesis", nemesis,
         "--nemesis-interval", "1", "--time-limit", "3", "--quiesce", "0",
         "--store", str(tmp_path / "store")],
        cwd=REPO, capture_output=True, text=True, timeout=180)


@pytest.mark.integration
def test_kill_one_service_from_the_cli_kills_only_that_service(tmp_path):
    proc = _run(tmp_path, "kill:side")
    assert "Traceback" not in proc.stderr, proc.stderr
    hist = next(p for p in (tmp_path / "store").glob("*/*/history.jsonl")
                if p.parent.name != "latest")
    ops = [json.loads(line) for line in hist.read_text().splitlines()]
    kills = [o for o in ops if o.get("f") == "kill" and o.get("type") != "invoke"]
    assert kills, [o for o in ops if o.get("process") == "nemesis"][:5]
    assert all((o.get("value") or {}).get("service") == "side" for o in kills), kills
    assert "two-register-kill-side" in str(hist)


@pytest.mark.integration
def test_a_service_the_target_does_not_have_is_bad_input_naming_its_services(tmp_path):
    proc = _run(tmp_path, "kill:helth")
    assert proc.returncode == 4, proc.stderr
    assert "target two has no service 'helth' (its services: main, side)" in proc.stderr
    assert "Traceback" not in proc.stderr
