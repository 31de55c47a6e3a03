"""How long the runtime takes to start, kill, restart and pause a node of two services.

One pairkv node (docs/examples/pairkv.py: a data server and an agent, each ready on its own
port) on the local runtime, or in a container with --runtime docker: median and max over
--repeat rounds of

  start     both services started in order, each waited for on its ready port
  kill      SIGKILL to both process groups until every process is gone
  restart   both services again (NodeConfig.restart=True)
  pause     SIGSTOP to both groups until is_paused() confirms every process stopped
  resume    SIGCONT
  one kill  SIGKILL to the agent alone until it is gone

    python benchmarks/bench_runtime.py [--runtime local|docker] [--repeat 10] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chaos import plugins  # noqa: E402
from chaos.target import MAIN, Addr, NodeConfig  # noqa: E402

PAIRKV = Path(__file__).resolve().parents[1] / "docs" / "examples" / "pairkv.py"


def _runtime(name: str):
    if name == "docker":
        from chaos.runtime.docker import DockerRuntime

        return DockerRuntime(target=str(PAIRKV))
    from chaos.runtime.local import LocalRuntime

    return LocalRuntime()


def _config(rt, target, restart: bool) -> NodeConfig:
    ports = rt.node_ports("n1", target.ports)
    return NodeConfig("n1", Addr(rt.listen_host("n1"), ports[MAIN]), {}, rt.data_dir("n1"),
                      target.validate_options({}), ports=ports, nodes=("n1",),
                      restart=restart, code_root=rt.code_root("n1"), python=rt.python("n1"))


def measure(runtime: str, repeat: int) -> dict[str, dict[str, float]]:
    target = plugins.load_target(plugins.resolve_ref(str(PAIRKV)))
    rt = _runtime(runtime)
    times: dict[str, list[float]] = {k: [] for k in
                                     ("start", "kill", "restart", "pause", "resume", "one kill")}
    with tempfile.TemporaryDirectory() as store:
        rt.setup(["n1"], store)
        try:
            def timed(name: str, fn) -> None:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)

            def start(restart: bool) -> None:
                for svc in target.services(_config(rt, target, restart)):
                    rt.start("n1", svc)

            def pause() -> None:
                rt.pause("n1")
                assert rt.is_paused("n1")

            for i in range(repeat):
                timed("start" if i == 0 else "restart", lambda again=i > 0: start(again))
                timed("pause", pause)
                timed("resume", lambda: rt.resume("n1"))
                timed("one kill", lambda: rt.kill("n1", "agent"))
                assert rt.is_running("n1", "data") and not rt.is_running("n1", "agent")
                timed("kill", lambda: rt.kill("n1"))
                assert not rt.is_running("n1")
        finally:
            rt.teardown()
    return {k: {"median_ms": round(statistics.median(v) * 1000, 1),
                "max_ms": round(max(v) * 1000, 1), "n": len(v)} for k, v in times.items() if v}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtime", choices=("local", "docker"), default="local")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out = measure(a.runtime, a.repeat)
    if a.json:
        print(json.dumps(out))
        return
    for name, row in out.items():
        print(f"{name:9s} median {row['median_ms']:8.1f} ms  max {row['max_ms']:8.1f} ms  "
              f"(n={row['n']})")


if __name__ == "__main__":
    main()
