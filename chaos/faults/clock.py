"""clock: skew one node's clocks with libfaketime (params node, mode, offset_s, rate, period_ms).

No root and no container privilege: libfaketime (Debian package `libfaketime`) is preloaded
into every service of every node when the run schedules this kind (`node_env`), and reads
the control file `<data_dir>/.chaos-clock` on every clock call (FAKETIME_NO_CACHE=1). The
fault rewrites that file on the node's host; the heal (end of run, Ctrl-C, SIGTERM) writes
"+0 x1" back. Every node starts with "+0 x1": a node whose fault is healed keeps real time.

Which clocks (libfaketime 0.9.10, FAKETIME_DONT_FAKE_MONOTONIC=0; docs/faults.md):
clock_gettime's CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW and CLOCK_BOOTTIME,
time() and gettimeofday(); waits are intercepted too (in faked time). Python's time.time()
is CLOCK_REALTIME, time.monotonic() (and so asyncio's timers) CLOCK_MONOTONIC: both move.
Under the preload CLOCK_MONOTONIC reads as the faked realtime (an epoch value, not seconds
since boot): it moves with every change below exactly as the wall clock does. Not changed:
a statically linked binary (libfaketime is never loaded, Go's runtime reads the vDSO
itself), the kernel's own timers (TCP retransmits, /proc/uptime), and other nodes. That
is why the fault is optional: a target lists "clock" in `Target.faults` only when its
processes read time through libc.

Modes (`--clock MODE[:VALUE...]`, chaos.faults.clock.parse_spec):
  offset  the clocks run `offset_s` ahead (negative: behind) of real time (a small skew;
          default a random ±0.1..2 s)
  bump    the same jump, large (default a random ±5..60 s): a clock stepped by a bad NTP
          server or an operator
  strobe  the clocks jump between +offset_s and real time every period_ms (default 1 s,
          200 ms) for the fault's whole window (the controller rewrites the file)
  drift   rate x0.9 or x1.1 (seeded): a bounded drift, the clock inside `--nemesis all`
  rate    the clocks run at `rate` times real speed (x0.5 slow, x2 fast). libfaketime scales
          the time since the process loaded it, so a running process would jump by
          age*(rate-1); the fault adds the offset that cancels this for the node's oldest
          process (its age is read from /proc on the node), so the clock bends without a
          jump. At the heal it returns to real time (a jump by what it lost or gained).

Verified: every process of the node runs under the control file with libfaketime mapped
(/proc/<pid>/maps), and a probe run on the node under the same preload and control file
reads back the offset and the rate (against the raw clock_gettime syscall, which
libfaketime cannot intercept); after the stop the probe reads real time again. A fresh
probe cannot see what a long-running process keeps (libfaketime keeps the last rate it
read), so when the target's status reports `time` (the answering process' own wall clock)
the node's clock itself is read back too, offset and rate, at the start and after the stop.
"""
from __future__ import annotations

import json
import random
import shlex
import sysconfig
import threading
import time
from typing import TYPE_CHECKING, Any

from chaos.errors import BadInput
from chaos.faults.base import Fault, Outcome, register

if TYPE_CHECKING:  # pragma: no cover
    from chaos.nemesis import Nemesis

#: the thread-safe variant (kvlite's nodes and most servers have threads)
LIB = f"/usr/lib/{sysconfig.get_config_var('MULTIARCH') or 'x86_64-linux-gnu'}" \
      "/faketime/libfaketimeMT.so.1"
#: the control file, relative to the node's data dir
CONTROL = ".chaos-clock"
MODES = ("offset", "bump", "strobe", "rate")
#: the rates of `--clock drift` (the clock inside `--nemesis all`): 10 % slow or fast
DRIFT = (0.9, 1.1)
#: how far a probe's reading may be from what was written (s; rate: relative)
OFFSET_TOLERANCE = 0.15
RATE_TOLERANCE = 0.05

#: runs on the node under the preload: the faked clocks against the raw syscall (JSON)
_PROBE = r"""
import ctypes, json, os, time
nr = {"x86_64": 228, "aarch64": 113}[os.uname().machine]
libc = ctypes.CDLL(None, use_errno=True)
class T(ctypes.Structure):
    _fields_ = [("s", ctypes.c_long), ("n", ctypes.c_long)]
def raw(c):
    t = T(); libc.syscall(nr, c, ctypes.byref(t)); return t.s + t.n / 1e9
def pair(c, fake):
    # (real, faked) read back to back; of 7 tries the one with the tightest real bracket,
    # so a preemption between the two reads (a loaded host) does not skew the answer
    best = None
    for _ in range(7):
        a = raw(c); f = fake(); b = raw(c)
        if best is None or b - a < best[0]:
            best = (b - a, (a + b) / 2, f)
    return best[1], best[2]
tick = os.sysconf("SC_CLK_TCK")
age = float(open("/proc/uptime").read().split()[0]) - int(
    open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19]) / tick
r0, w0 = pair(0, time.time)
m0, f0 = pair(1, time.monotonic)
while raw(1) - m0 < 0.5:
    pass
r1, w1 = pair(0, time.time)
m1, f1 = pair(1, time.monotonic)
print(json.dumps({"offset_s": round(w0 - r0, 3), "wall_rate": round((w1 - w0) / (r1 - r0), 3),
                  "mono_rate": round((f1 - f0) / (m1 - m0), 3),
                  "mono_minus_wall_s": round(f0 - w0, 3), "age_s": round(age, 2)}))
"""
#: runs on the node without the preload: the processes under a control file (JSON list)
_PROCS = r"""
import json, os, sys
want = ("FAKETIME_TIMESTAMP_FILE=" + sys.argv[1]).encode()
tick = os.sysconf("SC_CLK_TCK")
up = float(open("/proc/uptime").read().split()[0])
out = []
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        if want not in open(f"/proc/{p}/environ", "rb").read().split(b"\0"):
            continue
        st = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        if st[0] in ("Z", "X"):
            continue
        loaded = "libfaketime" in open(f"/proc/{p}/maps").read()
    except OSError:
        continue
    out.append({"pid": int(p), "age_s": round(up - int(st[19]) / tick, 2), "loaded": loaded})
if len(sys.argv) > 2:  # a rate: write it with the offset that keeps the oldest one continuous
    rate = float(sys.argv[2])
    age = max((p["age_s"] for p in out), default=0.0)
    line = f"{age * (1 - rate):+.6f} x{rate:g}"  # control_line's format
    with open(sys.argv[1] + ".new", "w") as f:
        f.write(line + "\n")
    os.replace(sys.argv[1] + ".new", sys.argv[1])
    out = {"procs": out, "age_s": age, "offset_s": round(age * (1 - rate), 6), "line": line}
print(json.dumps(out))
"""


def parse_spec(text: str) -> dict[str, Any]:
    """`--clock` -> {"mode": ..., and the values given}: "mixed" (a mode drawn per fault),
    "offset[:S]", "bump[:S]", "strobe[:S[:MS]]", "rate[:R]"; BadInput names the problem."""
    mode, *values = (text or "mixed").strip().split(":")
    if mode in ("mixed", "drift") and not values:
        return {"mode": mode}
    if mode not in MODES:
        raise BadInput(f"--clock {text}: unknown mode {mode!r}; choose from "
                       f"{', '.join(MODES)}, mixed, drift (e.g. bump:-10, rate:0.5, "
                       "strobe:1:200)")
    limit = {"offset": 1, "bump": 1, "strobe": 2, "rate": 1}[mode]
    if len(values) > limit:
        raise BadInput(f"--clock {text}: {mode} takes at most {limit} value(s)")
    try:
        nums = [float(v) for v in values]
    except ValueError:
        raise BadInput(f"--clock {text}: the values must be numbers") from None
    spec: dict[str, Any] = {"mode": mode}
    if mode == "rate":
        if nums and not 0.01 <= nums[0] <= 100:
            raise BadInput(f"--clock {text}: rate must be within 0.01..100 (x0.5: half speed)")
        if nums:
            spec["rate"] = nums[0]
        return spec
    if nums:
        if abs(nums[0]) > 10 * 365 * 86400:
            raise BadInput(f"--clock {text}: an offset of more than ten years")
        spec["offset_s"] = nums[0]
    if len(nums) > 1:
        if not 10 <= nums[1] <= 60000:
            raise BadInput(f"--clock {text}: the strobe period must be 10..60000 ms")
        spec["period_ms"] = int(nums[1])
    return spec


def control_line(offset_s: float, rate: float = 1.0) -> str:
    """The control file's content: libfaketime's relative spec "+S xR" / "-S xR".

    The rate is always written: a running libfaketime keeps the last rate it read when a
    new spec has none, so "+0" after "x0.1" would leave the node slow (and 0.9 times its
    age behind) while a fresh probe reads real time."""
    return f"{offset_s:+.6f} x{rate:g}"


class Clock(Fault):
    kind = "clock"
    start_op, stop_op = "start-clock", "stop-clock"
    optional = True
    in_all = False  # a lease trusts clocks by design: skew is its own experiment
    packages = ("libfaketime",)
    files = {LIB: "libfaketime"}
    heal_key = "clock"
    heal_order = 30

    def node_env(self, data_dir: str) -> dict[str, str]:
        return {"LD_PRELOAD": LIB, "FAKETIME_TIMESTAMP_FILE": f"{data_dir}/{CONTROL}",
                "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "0"}

    def node_files(self) -> dict[str, str]:
        return {CONTROL: control_line(0.0) + "\n"}

    def schedule_params(self, rng: random.Random, opts: dict[str, Any]) -> dict[str, Any]:
        spec = parse_spec(opts.get("clock", "mixed"))
        if spec["mode"] == "drift":  # a bounded drift: rate x0.9 or x1.1 (`--nemesis all`)
            return {"node": "leader", "mode": "rate", "rate": rng.choice(DRIFT)}
        mode = rng.choice(MODES) if spec["mode"] == "mixed" else spec["mode"]
        sign = rng.choice((-1, 1))
        params: dict[str, Any] = {"node": "leader", "mode": mode}
        if mode == "rate":
            params["rate"] = spec.get("rate", rng.choice((0.5, 2.0)))
            return params
        default = {"offset": round(sign * rng.uniform(0.1, 2.0), 3),
                   "bump": round(sign * rng.uniform(5, 60), 3), "strobe": 1.0}[mode]
        params["offset_s"] = spec.get("offset_s", default)
        if mode == "strobe":
            params["period_ms"] = spec.get("period_ms", 200)
        return params

    # -- on the node -----------------------------------------------------------------------
    @staticmethod
    def _write(nem: Nemesis, node: str, line: str) -> None:
        tmp = f"{CONTROL}.new"
        res = nem.ctx.runtime.run(node, f"printf '%s\\n' {shlex.quote(line)} > {tmp} && "
                                        f"mv -f {tmp} {CONTROL}", 15)
        if not res.ok:
            raise RuntimeError(f"cannot write {node}'s clock control file: "
                               f"{(res.err or res.out).strip()[:200]}")

    def _python(self, nem: Nemesis, node: str, script: str, args: str = "",
                env: dict[str, str] | None = None) -> Any:
        rt = nem.ctx.runtime
        words = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        res = rt.run(node, f"{words} {shlex.quote(rt.python(node))} -c "
                           f"{shlex.quote(script)} {args}", 20)
        if not res.ok:
            raise RuntimeError(f"clock probe on {node} failed: {(res.err or res.out)[-300:]}")
        return json.loads(res.out.strip().splitlines()[-1])

    def processes(self, nem: Nemesis, node: str) -> list[dict[str, Any]]:
        """The node's processes running under its control file (pid, age_s, loaded)."""
        path = f"{nem.ctx.runtime.data_dir(node)}/{CONTROL}"
        return list(self._python(nem, node, _PROCS, shlex.quote(path)))

    def probe(self, nem: Nemesis, node: str) -> dict[str, Any]:
        """The node's clocks as a process under the same preload and control file reads them."""
        return dict(self._python(nem, node, _PROBE,
                                 env=self.node_env(nem.ctx.runtime.data_dir(node))))

    def _check(self, nem: Nemesis, node: str, offset_s: float, rate: float,
               written_at: float) -> tuple[dict[str, Any], list[str]]:
        """The probe's and the node's own readings against what was written at `written_at`
        (controller time): the node's clock is `offset_s` off, or under a rate it bends from
        real time at the write (its offset grows by (rate-1) s per second since)."""
        procs = self.processes(nem, node)
        problems = []
        if not procs:
            problems.append(f"no process of {node} runs under the clock control file")
        bare = [p["pid"] for p in procs if not p["loaded"]]
        if bare:
            problems.append(f"{node}: libfaketime not loaded in pid(s) {bare}")
        seen = self.probe(nem, node)
        # under a rate the probe's own clock started at its start: it lags by age*(1-rate)
        # (its age from /proc counts from the fork, libfaketime's from the exec: slack)
        expected = offset_s + (rate - 1) * seen.get("age_s", 0.0)
        if abs(seen["offset_s"] - expected) > OFFSET_TOLERANCE + abs(rate - 1) * 0.2:
            problems.append(f"{node}: clock offset read back {seen['offset_s']:+.3f} s, "
                            f"expected {expected:+.3f} s")
        for key in ("wall_rate", "mono_rate"):
            if abs(seen[key] - rate) > RATE_TOLERANCE * rate:
                problems.append(f"{node}: {key} read back {seen[key]}, expected {rate:g}")
        did: dict[str, Any] = {"read_back": seen, "processes": len(procs)}
        node_clock = self.node_clock(nem, node)
        if node_clock is not None:
            did["node_clock"] = node_clock
            expected = offset_s if rate == 1.0 else (rate - 1) * (node_clock["at"] - written_at)
            problems += self._compare(node, node_clock, round(expected, 3), rate)
        return did, problems

    @staticmethod
    def node_clock(nem: Nemesis, node: str) -> dict[str, float] | None:
        """The node's OWN clock, from the `time` key of its status (the wall clock of the
        process that answered), twice 0.5 s apart: offset from the controller's clock and
        rate. None when the target reports no `time` or the node does not answer."""
        status = nem.ctx.status
        if status is None:
            return None
        samples = []
        for i in range(2):
            if i:
                time.sleep(0.5)
            t0 = time.time()
            try:
                seen = status(node).get("time")
            except Exception:  # noqa: BLE001 - no answer: the probe's reading stands alone
                return None
            t1 = time.time()
            if not isinstance(seen, (int, float)):
                return None
            samples.append(((t0 + t1) / 2, float(seen), t1 - t0))
        (a, fa, da), (b, fb, db) = samples
        return {"offset_s": round(fb - b, 3), "rate": round((fb - fa) / (b - a), 3),
                "rtt_s": round(max(da, db), 3), "at": round(b, 3)}

    @staticmethod
    def _compare(node: str, seen: dict[str, float], offset_s: float, rate: float) -> list[str]:
        slack = OFFSET_TOLERANCE + seen["rtt_s"]
        problems = []
        if abs(seen["offset_s"] - offset_s) > slack + abs(rate - 1) * 1.0:
            problems.append(f"{node}'s own clock (status time) is {seen['offset_s']:+.3f} s "
                            f"off, expected {offset_s:+.3f} s")
        # two status answers 0.5 s apart: the rate's error is about 2 * rtt / 0.5 s
        if abs(seen["rate"] - rate) > RATE_TOLERANCE * rate + 4 * seen["rtt_s"]:
            problems.append(f"{node}'s own clock (status time) runs at {seen['rate']}, "
                            f"expected {rate:g}")
        return problems

    # -- the fault -------------------------------------------------------------------------
    def start(self, nem: Nemesis, params: dict[str, Any]) -> Outcome:
        node, why = nem.pick(params.get("node", "leader"))
        mode = params.get("mode", "bump")
        rate = float(params.get("rate", 1.0)) if mode == "rate" else 1.0
        offset = float(params.get("offset_s", 0.0))
        applied: dict[str, str] = nem.state.setdefault(self.kind, {})
        applied[node] = control_line(0.0)  # from here on the heal resets it, whatever happens
        out: dict[str, Any] = {"node": node, "chosen": why}
        if mode == "rate":  # one step on the node: ages read, the bending rate written
            path = f"{nem.ctx.runtime.data_dir(node)}/{CONTROL}"
            done = self._python(nem, node, _PROCS, f"{shlex.quote(path)} {rate!r}")
            offset, line = float(done["offset_s"]), str(done["line"])
            out["age_s"] = done["age_s"]  # no jump at the switch: see the module doc
        else:
            line = control_line(offset, rate)
            self._write(nem, node, line)
        written_at = time.time()
        applied[node] = line
        did, problems = self._check(nem, node, offset, rate, written_at)
        if mode == "strobe":
            self._strobe(nem, node, line, int(params.get("period_ms", 200)))
        nem.current = f"clock {mode} {line} on {node} ({why})"
        return {**out, "control": line, **did}, problems

    def _strobe(self, nem: Nemesis, node: str, line: str, period_ms: int) -> None:
        """Flip the control file between `line` and real time every period until stopped."""
        stop = threading.Event()
        flips = [0]

        def loop() -> None:
            while not stop.wait(period_ms / 1000):
                flips[0] += 1
                try:
                    self._write(nem, node, control_line(0.0) if flips[0] % 2 else line)
                except Exception:  # noqa: BLE001 - the stop's read-back says what held
                    continue
        thread = threading.Thread(target=loop, name=f"clock-strobe-{node}", daemon=True)
        nem.state.setdefault("clock-strobe", []).append((stop, thread, flips))
        thread.start()

    def _reset(self, nem: Nemesis) -> Outcome:
        """Every skewed node back to real time. A node leaves the state only once its file
        is rewritten, so a reset cut short (Ctrl-C during the stop) is finished by the heal."""
        strobes = nem.state.get("clock-strobe", [])
        flips = 0
        for stop, thread, count in strobes:
            stop.set()
            thread.join(5)
            flips += count[0]
        nem.state.pop("clock-strobe", None)
        applied: dict[str, str] = nem.state.get(self.kind, {})
        did: dict[str, Any] = {"reset": sorted(applied)}
        if strobes:
            did["strobe_flips"] = flips
        problems: list[str] = []
        for node in sorted(applied):
            self._write(nem, node, control_line(0.0))
            del applied[node]
            seen = self.probe(nem, node)
            did.setdefault("read_back", {})[node] = seen
            if abs(seen["offset_s"]) > OFFSET_TOLERANCE or abs(seen["wall_rate"] - 1) > \
                    RATE_TOLERANCE:
                problems.append(f"{node}: clock not back to real time after the reset ({seen})")
            node_clock = self.node_clock(nem, node)
            if node_clock is not None:
                did.setdefault("node_clock", {})[node] = node_clock
                problems += self._compare(node, node_clock, 0.0, 1.0)
        return did, problems

    def stop(self, nem: Nemesis, params: dict[str, Any]) -> Outcome:
        return self._reset(nem)

    def heal(self, nem: Nemesis) -> Outcome:
        if not nem.state.get(self.kind):
            return {}, []
        did, problems = self._reset(nem)
        return {"clock": did}, problems


register(Clock())
