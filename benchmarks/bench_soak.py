"""Soak: does a long `chaos run` keep the controller's and workers' memory flat, its history
growing linearly and its throughput steady? And is its history analysed within the bound?

    python benchmarks/bench_soak.py --out DIR [--sample 60] [--nice 15] [--analyze]
                                    -- --time-limit 3600 --rate 0 --workload set ...

Starts `chaos run <args> --store DIR/store` (under `nice -n N`: a soak measures memory, not
speed, on a shared machine) and, every `--sample` seconds, reads VmRSS from /proc/<pid>/status
of the controller, of each worker process (multiprocessing spawn children of the controller)
and of the other descendants (nodes, proxies: listed, not judged), plus the history's size.
After the run: completions per 10 s of the load (streamed from history.jsonl, constant
memory), history growth per minute, and the flatness check of the issue: every sample of the
load from minute 5 on within 20 % of the 5-minute value (controller; workers summed and each).
With --analyze, `/usr/bin/time -v chaos analyze` of the run's history: its peak RSS and
lines/s. With --stop-after-recording the run's own post-run check is not waited for: once the
history is closed and every node and worker is gone (the run is recorded and torn down; only
its in-process check is left), the controller gets SIGTERM and the history is analysed by
`chaos analyze` instead (an hour's history must not be checked by a controller started before
the bounded analysis path existed). Writes DIR/soak.json, DIR/soak.md (tables) and
DIR/soak.png (plot). Re-analyse an existing DIR without running again: --report-only.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # noqa: E402

BUCKET_S = 10
TOLERANCE = 0.20
REFERENCE_MIN = 5


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out.setdefault(ppid, []).append(int(d))
    return out


def _rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            m = re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def sample(root: int, history: Path | None) -> dict[str, Any]:
    """RSS (kB) of the controller, its workers and its other descendants; history bytes."""
    kids = _children()
    workers: dict[str, int] = {}
    others: dict[str, int] = {}
    todo = list(kids.get(root, []))
    while todo:
        pid = todo.pop()
        todo.extend(kids.get(pid, []))
        rss = _rss_kb(pid)
        if rss is None:
            continue
        cmd = _cmdline(pid)
        if "spawn_main" in cmd:
            workers[str(pid)] = rss
        else:
            others[f"{pid} {cmd[:60]}"] = rss
    size = history.stat().st_size if history is not None and history.exists() else 0
    return {"controller_kb": _rss_kb(root), "workers_kb": workers, "others_kb": others,
            "history_bytes": size}


def _history_of(store: Path) -> Path | None:
    found = sorted(store.glob("*/*/history.jsonl"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _writing(pid: int, path: Path) -> bool:
    """Whether `pid` holds `path` open for writing (the recorder's HistoryWriter)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != str(path):
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                flags = int(re.search(r"flags:\s+(\d+)", f.read()).group(1), 8)  # type: ignore[union-attr]
        except (OSError, AttributeError):
            continue
        if flags & 3:  # O_WRONLY or O_RDWR
            return True
    return False


def _recorded_and_torn_down(pid: int, history: Path | None, seen_writing: bool) -> bool:
    if history is None or not seen_writing or _writing(pid, history):
        return False
    kids = _children()
    todo, alive = list(kids.get(pid, [])), []
    while todo:
        p = todo.pop()
        todo.extend(kids.get(p, []))
        if "resource_tracker" not in _cmdline(p):
            alive.append(p)
    return not alive


def run(out: Path, args: list[str], every: float, nice: int,
        stop_after_recording: bool = False) -> dict[str, Any]:
    store = out / "store"
    cmd = ["nice", "-n", str(nice), sys.executable, "-m", "chaos", "run", *args,
           "--store", str(store)]
    log = open(out / "run.log", "wb")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    samples: list[dict[str, Any]] = []
    next_at = t0
    seen_writing = False
    stopped_at = None
    while proc.poll() is None:
        now = time.monotonic()
        if stop_after_recording and stopped_at is None:
            hist = _history_of(store)
            seen_writing = seen_writing or (hist is not None and _writing(proc.pid, hist))
            if _recorded_and_torn_down(proc.pid, hist, seen_writing):
                proc.terminate()
                stopped_at = round(now - t0, 1)
        if now >= next_at:
            s = sample(proc.pid, _history_of(store))
            s["t_s"] = round(now - t0, 1)
            samples.append(s)
            with open(out / "samples.jsonl", "a") as f:
                f.write(json.dumps(s) + "\n")
            next_at += every
        time.sleep(min(1.0, max(0.05, next_at - time.monotonic())))
    return {"cmd": cmd, "exit_code": proc.returncode, "wall_s": round(time.monotonic() - t0, 1),
            "samples": samples, "history": str(_history_of(store)),
            "stopped_after_recording_s": stopped_at}


def throughput(history: Path) -> dict[str, Any]:
    """Client completions per BUCKET_S of history time, and the load's span, streamed."""
    buckets: dict[int, int] = {}
    lines = 0
    first = last = None
    f_ops = f_ok = 0
    f_keys: set[Any] = set()
    f_start: int | None = None
    f_end = 0
    with open(history, "rb") as f:
        for line in f:
            lines += 1
            try:
                op = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            p = op.get("process")
            if op.get("final"):
                if op["type"] == "invoke":
                    f_start = op["time"] if f_start is None else f_start
                else:
                    f_ops += 1
                    f_ok += op["type"] == "ok"
                    f_keys.add(op.get("key"))
                    f_end = op["time"]
                continue
            if op.get("type") == "invoke" or not isinstance(p, int):
                continue
            t = int(op["time"])
            first = t if first is None else first
            last = t
            b = t // (BUCKET_S * 10**9)
            buckets[b] = buckets.get(b, 0) + 1
    per = ([buckets.get(b, 0) / BUCKET_S for b in range(min(buckets), max(buckets) + 1)]
           if buckets else [])
    return {"lines": lines, "ops_per_s_by_10s": per,
            "first_bucket_s": min(buckets or [0]) * BUCKET_S,
            "load_s": ((last or 0) - (first or 0)) / 1e9,
            "final_reads": {"ops": f_ops, "ok": f_ok, "keys": len(f_keys),
                            "seconds": round((f_end - (f_start or f_end)) / 1e9, 1)}}


def flatness(samples: list[dict[str, Any]], load_s: float, every: float) -> dict[str, Any]:
    """Every load sample from REFERENCE_MIN on within TOLERANCE of the REFERENCE_MIN value."""
    ref_t = REFERENCE_MIN * 60 if load_s > REFERENCE_MIN * 60 * 2 else load_s / 4
    load = [s for s in samples if s["workers_kb"]]  # the load: while the workers live
    if load:
        ref_t += load[0]["t_s"]
    ref = min((s for s in load if s["t_s"] >= ref_t), key=lambda s: s["t_s"], default=None)
    if ref is None:
        return {"ok": None, "why": "no sample at the reference time"}
    later = [s for s in load if s["t_s"] >= ref["t_s"]]

    def series(s: dict[str, Any]) -> dict[str, float]:
        out = {"controller": float(s["controller_kb"] or 0),
               "workers (sum)": float(sum(s["workers_kb"].values()))}
        for pid, kb in s["workers_kb"].items():
            out[f"worker {pid}"] = float(kb)
        return out

    base = series(ref)
    worst: dict[str, float] = {}
    for s in later:
        for name, kb in series(s).items():
            if name in base and base[name] > 0:
                worst[name] = max(worst.get(name, 0.0), abs(kb / base[name] - 1))
    return {"reference_t_s": ref["t_s"], "reference_kb": base,
            "max_deviation": {k: round(v, 3) for k, v in worst.items()},
            "ok": all(v <= TOLERANCE for v in worst.values())}


def analyze(history: Path, lines: int) -> dict[str, Any]:
    """`/usr/bin/time -v chaos analyze --json` of the history: peak RSS, wall time, verdict."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "chaos", "analyze", "--json",
           str(history)]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    valid = None
    try:
        valid = json.loads(p.stdout).get("valid")
    except (ValueError, AttributeError):
        pass
    return {"cmd": " ".join(cmd), "exit_code": p.returncode, "wall_s": round(wall, 1),
            "peak_rss_mb": round(int(peak.group(1)) / 1024, 1) if peak else None,
            "lines_per_s": round(lines / wall) if wall else None, "valid": valid,
            "stderr_tail": p.stderr.strip().splitlines()[-25:-23] if p.returncode > 2 else []}


def report(out: Path, doc: dict[str, Any]) -> None:
    samples = doc["samples"]
    md = [f"command: `{' '.join(doc['cmd'])}` (exit {doc['exit_code']}, {doc['wall_s']} s)", "",
          "| t (min) | controller RSS (MB) | workers RSS (MB, each) | history (MB) |",
          "|---|---|---|---|"]
    for s in samples:
        ws = ", ".join(f"{kb / 1024:.0f}" for kb in s["workers_kb"].values())
        md.append(f"| {s['t_s'] / 60:.1f} | {(s['controller_kb'] or 0) / 1024:.0f} | {ws} | "
                  f"{s['history_bytes'] / 2**20:.0f} |")
    tp = doc.get("throughput", {})
    per = tp.get("ops_per_s_by_10s", [])
    if per:
        md += ["", "completions/s per 10 s of history time: "
               + " ".join(f"{v:.0f}" for v in per)]
    md += ["", f"final reads: {json.dumps(tp.get('final_reads'))}",
           "", f"flatness: {json.dumps(doc.get('flatness'))}"]
    if doc.get("analysis"):
        md += ["", f"analysis: {json.dumps(doc['analysis'])}"]
    (out / "soak.md").write_text("\n".join(md) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 7))
    t = [s["t_s"] / 60 for s in samples]
    a1.plot(t, [(s["controller_kb"] or 0) / 1024 for s in samples], label="controller")
    pids = sorted({p for s in samples for p in s["workers_kb"]})
    for pid in pids:
        a1.plot(t, [s["workers_kb"].get(pid, float("nan")) / 1024 for s in samples],
                label=f"worker {pid}")
    a1.set_ylabel("RSS (MB)")
    a1.set_xlabel("minutes")
    a1.legend(fontsize=7)
    a1b = a1.twinx()
    a1b.plot(t, [s["history_bytes"] / 2**20 for s in samples], "k--", label="history MB")
    a1b.set_ylabel("history (MB, dashed)")
    a2.plot([i * BUCKET_S / 60 for i in range(len(per))], per)
    a2.set_ylabel(f"completions/s (per {BUCKET_S} s)")
    a2.set_xlabel("minutes of history time")
    fig.tight_layout()
    fig.savefig(out / "soak.png", dpi=90)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--sample", type=float, default=60.0, help="seconds between samples")
    ap.add_argument("--nice", type=int, default=15)
    ap.add_argument("--analyze", action="store_true", help="also time `chaos analyze`")
    ap.add_argument("--report-only", action="store_true", help="reuse DIR/soak.json")
    ap.add_argument("--stop-after-recording", action="store_true",
                    help="SIGTERM the controller once recorded and torn down (see above)")
    ap.add_argument("run_args", nargs=argparse.REMAINDER, help="-- then chaos run's arguments")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.report_only:
        doc = json.loads((a.out / "soak.json").read_text())
    else:
        args = a.run_args[1:] if a.run_args[:1] == ["--"] else a.run_args
        doc = run(a.out, args, a.sample, a.nice, a.stop_after_recording)
    if "final_reads" not in doc.get("throughput", {}):  # a run, or a report from before
        doc["throughput"] = throughput(Path(doc["history"]))
    doc["flatness"] = flatness(doc["samples"], doc["throughput"]["load_s"], a.sample)
    if a.analyze:
        doc["analysis"] = analyze(Path(doc["history"]), doc["throughput"]["lines"])
    (a.out / "soak.json").write_text(json.dumps(doc, indent=1))
    report(a.out, doc)
    print((a.out / "soak.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
