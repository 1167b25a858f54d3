"""Runs the benchmark cells (workload x system) in alternation and prints the table.

Called by bench/run (which raises `ulimit -n`), itself called by `make bench`. Every program
prints `RESULT <number>` as its last line; peak RSS comes from `/usr/bin/time -f %M`. Each
round runs every cell once, the systems in a rotated order, so drift hits all alike; the
table gives medians over the rounds. W3's clients talk to one echo server process (C, libuv)
listening on 127.0.0.1, a fresh port per client run; the server is stopped at the end.

Environment: BENCH_ROUNDS (default 5), BENCH_ONLY (e.g. "w1,w3"), BENCH_TIMEOUT (seconds per
run, default 180), REM (the rem program), BENCH_BIN (the C programs), LUA, PYTHON.
"""
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REM = os.environ.get("REM", "build/bin/rem")
BIN = os.environ.get("BENCH_BIN", "build/bench")
LUA = os.environ.get("LUA", "lua5.4")
PYTHON = os.environ.get("PYTHON", "/usr/bin/python3")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "180"))
ONLY = [w for w in os.environ.get("BENCH_ONLY", "").split(",") if w]

W4_MEMBERS = 100_000

# workload -> (what the number is, unit, [(system, argv)]); "{port}" is W3's server port.
WORKLOADS = {
    "w1": ("enter+exit", "ns", [
        ("c", [f"{BIN}/w1"]),
        ("lua-close", [LUA, f"{HERE}/lua/w1_floor.lua"]),
        ("rem", [REM, f"{HERE}/rem/w1.lua"]),
        ("lua+luv", [LUA, f"{HERE}/luv/w1.lua"]),
        ("asyncio", [PYTHON, f"{HERE}/py/w1.py"]),
    ]),
    "w2": ("exit-stack entry", "ns", [
        ("c", [f"{BIN}/w2"]),
        ("rem", [REM, f"{HERE}/rem/w2.lua"]),
        ("lua+luv", [LUA, f"{HERE}/luv/w2.lua"]),
        ("asyncio", [PYTHON, f"{HERE}/py/w2.py"]),
    ]),
    "w3": ("gather 1,000 TCP round", "ms", [
        ("c", [f"{BIN}/w3", "{port}"]),
        ("rem", [REM, f"{HERE}/rem/w3.lua", "{port}"]),
        ("lua+luv", [LUA, f"{HERE}/luv/w3.lua", "{port}"]),
        ("asyncio", [PYTHON, f"{HERE}/py/w3.py", "{port}"]),
        ("uvloop", [PYTHON, f"{HERE}/py/w3.py", "{port}", "--uvloop"]),
    ]),
    "w4": ("fan-out 100,000 wall", "ms", [
        ("c", [f"{BIN}/w4"]),
        ("rem", [REM, f"{HERE}/rem/w4.lua"]),
        ("rem-cmem", [REM, f"{HERE}/rem/w4_cmembers.lua"]),
        ("lua+luv", [LUA, f"{HERE}/luv/w4.lua"]),
        ("asyncio", [PYTHON, f"{HERE}/py/w4.py"]),
        ("uvloop", [PYTHON, f"{HERE}/py/w4.py", "--uvloop"]),
    ]),
}


class EchoServer:
    """The W3 server: one process, `count` ports from a random base below 32768."""

    def __init__(self, count):
        self.proc = None
        for _ in range(10):
            base = random.randrange(20000, 32768 - count)
            proc = subprocess.Popen([f"{BIN}/echo_server", str(base), str(count)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            line = proc.stdout.readline().strip()  # READY, or EOF when a bind failed
            if line == "READY":
                self.proc, self.ports = proc, list(range(base, base + count))
                return
            proc.wait(timeout=5)
        raise RuntimeError("echo_server: could not bind a port range")

    def port(self):
        return self.ports.pop(0)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_cell(argv):
    """Runs one program; returns (number, rss_kb) or (None, why)."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        cmd = ["/usr/bin/time", "-f", "%M", "-o", rss.name] + argv
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            return None, f"timed out after {TIMEOUT:.0f} s"
        lines = [l for l in p.stdout.strip().splitlines() if l.strip()]
        last = lines[-1].split() if lines else []
        if p.returncode != 0 or len(last) != 2 or last[0] != "RESULT":
            err = (p.stderr.strip().splitlines() or ["no output"])
            err = [l for l in err if not l.startswith("Command exited")] or err
            return None, f"exit {p.returncode}: {err[-1][:160]}"
        try:
            kb = int(rss.read().strip().splitlines()[-1])
        except (ValueError, IndexError):
            kb = 0
        return float(last[1]), kb


def fmt(x):
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def main():
    names = [w for w in WORKLOADS if not ONLY or w in ONLY]
    results = {(w, s): [] for w in names for s, _ in WORKLOADS[w][2]}
    rss = {k: [] for k in results}
    errors = {}
    server = None
    if "w3" in names:
        server = EchoServer(ROUNDS * len(WORKLOADS["w3"][2]))
    started = time.time()
    try:
        for r in range(ROUNDS):
            for w in names:
                systems = WORKLOADS[w][2]
                k = r % len(systems)
                for system, argv in systems[k:] + systems[:k]:  # rotated each round
                    argv = [a.format(port=server.port()) if a == "{port}" else a for a in argv]
                    value, kb = run_cell(argv)
                    if value is None:
                        errors.setdefault((w, system), kb)
                        print(f"  round {r + 1} {w} {system}: FAILED ({kb})", file=sys.stderr)
                        continue
                    results[(w, system)].append(value)
                    rss[(w, system)].append(kb)
                    print(f"  round {r + 1} {w} {system}: {value:g} ({kb} KB)", file=sys.stderr)
    finally:
        if server:
            server.stop()
    elapsed = time.time() - started

    med = {k: statistics.median(v) if v else None for k, v in results.items()}
    mrss = {k: statistics.median(v) if v else None for k, v in rss.items()}

    print()
    print(f"rem benchmarks: medians of {ROUNDS} rounds, run in alternation "
          f"({elapsed:.0f} s; {os.cpu_count()} CPUs)")
    print("c: plain C on libuv; lua-close: plain Lua `local x <close> = setmetatable({}, mt)`"
          " (W1's floor);")
    print("rem: the rem script (Lua members); rem-cmem: W4 with C members (rem.core.sleeper, "
          "no coroutine);")
    print("lua+luv: Lua 5.4 + luv with a hand-written scheduler, exit stack and gather; "
          "asyncio / uvloop: Python 3.")
    print("x C, x rem: the median over C's, over rem's (lower is faster for every workload).")
    for w in names:
        what, unit, systems = WORKLOADS[w]
        c, rem = med.get((w, "c")), med.get((w, "rem"))
        print()
        print(f"{w.upper()} {what} ({unit})")
        print(f"  {'system':<10} {'median':>10} {'x C':>8} {'x rem':>8} {'peak RSS KB':>12}"
              + (f" {'B/member':>9}" if w == "w4" else ""))
        for system, _ in systems:
            m = med[(w, system)]
            line = f"  {system:<10} {fmt(m):>10} "
            line += f"{fmt(m / c) if m and c else '-':>8} "
            line += f"{fmt(m / rem) if m and rem else '-':>8} "
            kb = mrss[(w, system)]
            line += f"{kb and f'{kb:.0f}' or '-':>12}"
            if w == "w4":
                line += f" {fmt(kb * 1024 / W4_MEMBERS) if kb else '-':>9}"
            if (w, system) in errors and m is None:
                line += f"   FAILED: {errors[(w, system)]}"
            print(line)

    print()
    print("Targets")

    def ratio(w, a, b):
        x, y = med.get((w, a)), med.get((w, b))
        return x / y if x and y else None

    def target(label, value, ok, want):
        status = "n/a" if value is None else ("MET" if ok(value) else "NOT MET")
        print(f"  {label:<36} {fmt(value):>8}  (want {want})  {status}")

    if "w1" in names:
        target("W1 rem / lua <close> floor", ratio("w1", "rem", "lua-close"),
               lambda v: v <= 1.5, "<= 1.5")
    if "w2" in names:
        target("W2 lua+luv / rem (speed-up)", ratio("w2", "lua+luv", "rem"),
               lambda v: v >= 2, ">= 2")
        target("W2 asyncio / rem (speed-up)", ratio("w2", "asyncio", "rem"),
               lambda v: v >= 5, ">= 5")
    if "w3" in names:
        target("W3 rem / C", ratio("w3", "rem", "c"), lambda v: v <= 1.5, "<= 1.5")
    if "w4" in names:
        for system in ("rem", "rem-cmem"):
            target(f"W4 {system} / C wall", ratio("w4", system, "c"), lambda v: v <= 8, "<= 8")
            kb = mrss.get(("w4", system))
            target(f"W4 {system} peak RSS per member (B)",
                   kb * 1024 / W4_MEMBERS if kb else None, lambda v: v <= 1536, "<= 1536")

    print()
    for w in names:
        unit = WORKLOADS[w][1]
        for system, _ in WORKLOADS[w][2]:
            k = (w, system)
            m = med[k]
            if m is None:
                print(f"BENCH {w} {system} failed=1")
            else:
                print(f"BENCH {w} {system} median_{unit}={m:.3f} rss_kb={mrss[k]:.0f} "
                      f"runs={len(results[k])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
