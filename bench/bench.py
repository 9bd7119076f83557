#!/usr/bin/env python3
"""hotprobe's benchmarks: every figure is a median of interleaved runs (bare
and probed side by side in one session), printed as markdown for
BENCHMARKS.md.

    python3 bench/bench.py [call-cost|install|many|nested|redis|cpython|speed|kernel|report|all] [--rounds N] [--probeset FILE] [--config FILE] [--no-pin] [--py-rounds N]
    python3 bench/bench.py loops --rounds N [--card FILE]... [--loop-variant NAME=FLAGS]...

`report` times `hotprobe report` over 100 fixture snapshots of 10,000 probes
(the CLI's speed goal: under 2 s); it waits for the 1-minute load average to
fall under --max-load (default 1.5) before measuring, and says what it was.

--probeset adds a redis (or cpython) variant that runs with that probe set
(for example the one `hotprobe iterate` ran its settled iteration with,
iter-N/probes.toml; for cpython one from `scripts/cpython.sh`).

`cpython` runs demo/pybench.py on a Python with a shared libpython ($PYTHON,
default this machine's pyenv 3.11.7), --py-rounds rounds a run.

Needs a release build (cargo build --release --workspace) and gcc; the
uftrace column needs `uftrace`, redis needs `redis-server redis-benchmark`.

`speed --probeset FILE` asks whether a speed probe the agent could run at
start-up follows redis's own slow and fast periods: each round runs the
probes of bench/speed_kernels.c and a large-code kernel on CPU 0 before and
after one pinned redis run with that probe set and adaptive off.

`loops` (not part of `all`: ~15 s a loop) asks whether independent loops of
`scripts/redis.sh` end with the same hot set: each round runs one loop with
the built-in score card and one with each --card (the agent's TOML config),
one after the other, into target/redis/loops/; then, per variant, the pairs
of loops whose final hot sets (the last iteration's `hot` probes) have a
Jaccard index of at least 0.9, and the functions hot in some loops only.

`demo-loops` (not part of `all`: ~10 s a loop) asks whether the demo's hot
set settles by iteration 3: each round runs `hotprobe iterate --iterations 5
--no-early-stop` on demo/kvstore.c (--demo-args, default none) into
target/demo/loops/, with --busy N `while :; do :; done` loops beside it, and
`hotprobe converge --format json` over its iterations says whether the step
from 2 to 3 met iterate's thresholds (Jaccard and Spearman ≥ 0.9) and whether
every later step did too.
"""
import argparse, glob, json, os, random, re, shlex, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT = os.path.join(ROOT, "target", "release", "libhotprobe.so")
CLI = os.path.join(ROOT, "target", "release", "hotprobe")
WORK = tempfile.mkdtemp(prefix="hotprobe-bench-")


def build(src, out, *flags):
    path = os.path.join(WORK, out)
    subprocess.run(["gcc", "-O2", "-g", "-o", path, os.path.join(ROOT, src), *flags, "-lpthread"], check=True)
    return path


def agent_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTPROBE_")}
    env["LD_PRELOAD"] = AGENT
    env["HOTPROBE_OUTPUT"] = os.path.join(WORK, "{exe}-{pid}.json")
    env.update(extra)
    return env


def bare_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("HOTPROBE_") and k != "LD_PRELOAD"}


def run(cmd, env, timeout=600):
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=WORK)


def med(values):
    return statistics.median(values)


def call_cost(rounds):
    prog = build("bench/call_cost.c", "call_cost")
    n = "3000000"
    variants = {
        "bare": (lambda: [prog, n, "0"], bare_env()),
        "hotprobe, probe active": (lambda: [prog, n, "0"], agent_env(HOTPROBE_ADAPTIVE="0", HOTPROBE_INCLUDE="leaf")),
        "hotprobe, probe disabled by the score card": (lambda: [prog, n, "200000"], agent_env(HOTPROBE_INCLUDE="leaf")),
    }
    if shutil.which("uftrace"):
        data = os.path.join(WORK, "uftrace.data")
        variants["uftrace record -P leaf"] = (lambda: ["uftrace", "record", "-P", "leaf", "-d", data, prog, n, "0"], bare_env())
    skeleton = build("bench/skeleton.c", "skeleton")
    multi = build("bench/multi_call.c", "multi_call")
    results = {k: [] for k in variants}
    floor = {"bare": [], "swap": [], "swap+clock": []}
    many = {"bare": [], "hotprobe, probes active": []}
    many_env = {"bare": bare_env(), "hotprobe, probes active": agent_env(HOTPROBE_ADAPTIVE="0", HOTPROBE_INCLUDE="leaf*")}
    for _ in range(rounds):
        for name, (cmd, env) in variants.items():
            out = run(cmd(), env).stdout
            m = re.search(r"([0-9.]+) ns/call", out)
            if m:
                results[name].append(float(m.group(1)))
        for name, env in many_env.items():
            m = re.search(r"([0-9.]+) ns/call", run([multi, n, "16"], env).stdout)
            if m:
                many[name].append(float(m.group(1)))
        m = re.search(r"bare ([0-9.]+) swap ([0-9.]+) swap\+clock ([0-9.]+)", run([skeleton, n], bare_env()).stdout)
        if m:
            for k, v in zip(floor, m.groups()):
                floor[k].append(float(v))
    bare = med(results["bare"])
    print(f"### Per-call cost of a ~3 ns function (`bench/call_cost.c`, {rounds} interleaved rounds, median)\n")
    print("| variant | ns per call | added to the bare call | × bare |")
    print("| --- | ---: | ---: | ---: |")
    for name, vals in results.items():
        if not vals:
            continue
        v = med(vals)
        print(f"| {name} | {v:.1f} | {v - bare:+.1f} | {v / bare:.2f} |")
    if "uftrace record -P leaf" in results and results["uftrace record -P leaf"]:
        ours = med(results["hotprobe, probe active"]) - bare
        theirs = med(results["uftrace record -P leaf"]) - bare
        print(f"\nhotprobe adds {ours / theirs:.2f}× what uftrace adds ({ours:.1f} ns vs {theirs:.1f} ns).")
    if many["bare"] and many["hotprobe, probes active"]:
        mb = med(many["bare"])
        mh = med(many["hotprobe, probes active"])
        print("\n16 such functions called in a random order (`bench/multi_call.c`, same rounds):\n")
        print("| variant | ns per call | added |")
        print("| --- | ---: | ---: |")
        print(f"| bare | {mb:.1f} | +0.0 |")
        print(f"| hotprobe, probes active | {mh:.1f} | {mh - mb:+.1f} |")
    if floor["bare"]:
        fb = med(floor["bare"])
        print("\nThe least any return-hooking probe costs here (`bench/skeleton.c`, same rounds):\n")
        print("| skeleton | ns per call | added |")
        print("| --- | ---: | ---: |")
        print(f"| bare call | {fb:.1f} | +0.0 |")
        print(f"| return address swapped for an exit label | {med(floor['swap']):.1f} | {med(floor['swap']) - fb:+.1f} |")
        print(f"| the same and two `rdtsc` | {med(floor['swap+clock']):.1f} | {med(floor['swap+clock']) - fb:+.1f} |")
    print()


def install(rounds):
    prog = build("bench/funcs5000.c", "funcs5000")
    times, totals, cal = [], [], []
    for _ in range(rounds):
        err = run([prog], agent_env(HOTPROBE_LOG="info")).stderr
        m = re.search(r"(\d+) probes installed in ([0-9.]+) ms .*start-up ([0-9.]+) ms in all, calibration ([0-9.]+) ms", err)
        if m:
            count = int(m.group(1))
            times.append(float(m.group(2)))
            totals.append(float(m.group(3)))
            cal.append(float(m.group(4)))
    print(f"### Installing {count} probes (`bench/funcs5000.c`, {rounds} runs, median)\n")
    print("| step | ms |")
    print("| --- | ---: |")
    print(f"| discovery + selection + trampolines + patching | {med(times):.1f} |")
    print(f"| calibration of the probe's cost | {med(cal):.1f} |")
    print(f"| agent start-up in all | {med(totals):.1f} |\n")


def many(rounds):
    """2,000 small functions × 4 threads, adaptive on: what the whole run
    costs against bare, at two lengths (the agent's start-up — calibration
    and installing 2,001 probes — and exit snapshot are a fixed cost)."""
    import json, glob
    prog = build("tests/programs/many.c", "many")
    lengths = ("3000", "10000")
    times = {(n, v): [] for n in lengths for v in ("bare", "agent")}
    disabled = []
    for _ in range(rounds):
        for n in lengths:
            for v, env in (("bare", bare_env()), ("agent", agent_env())):
                for f in glob.glob(os.path.join(WORK, "many-*.json")):
                    os.remove(f)
                t0 = time.monotonic()
                run([prog, n], env)
                times[(n, v)].append(time.monotonic() - t0)
                snaps = glob.glob(os.path.join(WORK, "many-*.json"))
                if v == "agent" and snaps:
                    s = json.load(open(snaps[0]))
                    fs = [p for p in s["probes"] if re.fullmatch(r"f\d+", p["name"])]
                    disabled.append(100.0 * sum(p["state"] == "disabled" for p in fs) / max(len(fs), 1))
    print(f"### 2,000 small functions × 4 threads, adaptive on (`tests/programs/many.c ROUNDS`, {rounds} interleaved pairs, median)\n")
    print("| ROUNDS (calls) | bare s | hotprobe s | × bare |")
    print("| --- | ---: | ---: | ---: |")
    for n in lengths:
        b, a = med(times[(n, "bare")]), med(times[(n, "agent")])
        print(f"| {n} ({int(n) * 8000 / 1e6:.0f} M) | {b:.3f} | {a:.3f} | {a / b:.2f} |")
    print(f"\n{med(disabled):.1f}% of the 2,000 probes disabled by the end (median over runs).\n")


def kernel(rounds):
    """The kernel backend side by side with bare and inline: per-call cost,
    and how fast adaptive disabling brings a whole program's cost down."""
    import json, glob
    prog = build("bench/call_cost.c", "call_cost")
    n = "200000"  # a kernel-probed call costs µs: fewer calls than call-cost
    variants = {
        "bare": ([prog, n, "0"], bare_env()),
        "inline, probe active": ([prog, n, "0"], agent_env(HOTPROBE_ADAPTIVE="0", HOTPROBE_INCLUDE="leaf")),
        "kernel, probe active (entry + ret uprobes)": ([prog, n, "0"], agent_env(HOTPROBE_BACKEND="kernel", HOTPROBE_ADAPTIVE="0", HOTPROBE_INCLUDE="leaf")),
        "kernel, probe disabled by the score card": ([prog, n, "20000", "500"], agent_env(HOTPROBE_BACKEND="kernel", HOTPROBE_INCLUDE="leaf")),
    }
    results = {k: [] for k in variants}
    for _ in range(rounds):
        for name, (cmd, env) in variants.items():
            m = re.search(r"([0-9.]+) ns/call", run(cmd, env).stdout)
            if m:
                results[name].append(float(m.group(1)))
    bare = med(results["bare"])
    print(f"### Kernel backend: per-call cost of a ~3 ns function (`bench/call_cost.c {n}`, {rounds} interleaved rounds, median)\n")
    print("| variant | ns per call | added to the bare call | × inline's added cost |")
    print("| --- | ---: | ---: | ---: |")
    inline_added = med(results["inline, probe active"]) - bare
    for name, vals in results.items():
        if vals:
            v = med(vals)
            print(f"| {name} | {v:,.1f} | {v - bare:+,.1f} | {(v - bare) / inline_added:,.1f} |")
    print()
    many_prog = build("tests/programs/many.c", "many")
    runs = {
        "bare": bare_env(),
        "inline, adaptive on": agent_env(),
        "kernel, adaptive on": agent_env(HOTPROBE_BACKEND="kernel"),
        "kernel, adaptive off": agent_env(HOTPROBE_BACKEND="kernel", HOTPROBE_ADAPTIVE="0"),
    }
    walls = {k: [] for k in runs}
    disabled = {k: [] for k in runs}
    lost = {k: [] for k in runs}
    for _ in range(rounds):
        for name, env in runs.items():
            for f in glob.glob(os.path.join(WORK, "many-*.json")):
                os.remove(f)
            t0 = time.monotonic()
            run([many_prog, "300"], env)
            walls[name].append(time.monotonic() - t0)
            snaps = glob.glob(os.path.join(WORK, "many-*.json"))
            if snaps:
                s = json.load(open(snaps[0]))
                fs = [p for p in s["probes"] if re.fullmatch(r"f\d+", p["name"])]
                disabled[name].append(100.0 * sum(p["state"] == "disabled" and p.get("disabled_at_ns") is not None for p in fs) / max(len(fs), 1))
                lost[name].append(s["meter"].get("lost_records", 0))
    b = med(walls["bare"])
    print(f"### Kernel backend: 2,000 small functions × 4 threads (`tests/programs/many.c 300`, 2.4 M calls; {rounds} interleaved rounds, median)\n")
    print("| variant | wall s (start to exit) | × bare | probes removed while running | records lost |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in runs:
        d = f"{med(disabled[name]):.1f}%" if disabled[name] else "-"
        l = f"{med(lost[name]):,.0f}" if lost[name] else "-"
        print(f"| {name} | {med(walls[name]):.2f} | {med(walls[name]) / b:,.0f} | {d} | {l} |")
    print()


def wait_for_quiet(max_load, tries=20, pause=30):
    """Waits (up to tries × pause seconds) for the 1-minute load average to
    fall under max_load: on a shared machine another build doubles a wall
    time. Returns the load it started at."""
    for _ in range(tries):
        load = os.getloadavg()[0]
        if load < max_load:
            return load
        print(f"load {load:.2f} ≥ {max_load}: waiting {pause} s", file=sys.stderr)
        time.sleep(pause)
    return os.getloadavg()[0]


def timed(cmd):
    """Wall seconds, CPU seconds (user + sys, all threads) and peak RSS (MB) of one run."""
    t0 = time.monotonic()
    child = subprocess.Popen(cmd, cwd=WORK, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - t0
    err = child.stderr.read().decode()
    child.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed: {err}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def report(rounds, max_load=1.5):
    snapshots, probes = 100, 10000
    fixtures = os.path.join(WORK, "report-fixtures")
    subprocess.run(["cargo", "run", "--quiet", "--release", "-p", "hotprobe-cli", "--example", "fixtures", "--",
                    fixtures, str(snapshots), str(probes)], cwd=ROOT, check=True)
    size = sum(os.path.getsize(os.path.join(fixtures, f)) for f in os.listdir(fixtures)) / 1e6
    cmd = [CLI, "report", fixtures, "--top", "20"]
    start_load = wait_for_quiet(max_load)
    timed(cmd)  # warm-up: the files in the page cache, as after the run that wrote them
    walls, cpus, rss, loads = [], [], [], [start_load]
    for _ in range(rounds):
        wall, cpu, mb = timed(cmd)
        walls.append(wall)
        cpus.append(cpu)
        rss.append(mb)
        loads.append(os.getloadavg()[0])
    print(f"### `hotprobe report DIR --top 20` over {snapshots} snapshots of {probes:,} probes ({size:,.0f} MB; {rounds} rounds after a warm-up, median)\n")
    print("| wall s | CPU s (user + sys) | peak RSS MB | 1-min load average while measured |")
    print("| ---: | ---: | ---: | ---: |")
    print(f"| {med(walls):.2f} ({min(walls):.2f}–{max(walls):.2f}) | {med(cpus):.2f} | {med(rss):.0f} | {min(loads):.2f}–{max(loads):.2f} |")
    print(f"\nGoal under 2 s wall: {'met' if med(walls) < 2 else 'NOT met'}.\n")
    print("per round (wall s / CPU s): " + "  ".join(f"{w:.2f}/{c:.2f}" for w, c in zip(walls, cpus)), file=sys.stderr)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_pinning(pin):
    """(server args, load prefix): redis-server's main thread on CPU 0, the
    load on CPU 1, as scripts/redis.sh does; nothing unless both CPUs are
    ours to use and taskset is there."""
    if pin and {0, 1} <= os.sched_getaffinity(0) and shutil.which("taskset"):
        return ["--server_cpulist", "0"], ["taskset", "-c", "1"]
    return [], []


def redis_once(env, requests, pin=True):
    port = free_port()
    server_args, load_prefix = redis_pinning(pin)
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"] + server_args,
                              env=env, cwd=WORK, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        cpu0 = cpu_seconds(server.pid)
        out = subprocess.run(load_prefix + ["redis-benchmark", "-p", str(port), "-c", "8", "-n", str(requests), "-t", "set,get", "--csv"],
                             capture_output=True, text=True).stdout
        cpu = cpu_seconds(server.pid) - cpu0
        rps = [float(m) for m in re.findall(r'^"(?:SET|GET)","([0-9.]+)"', out, re.M)]
    finally:
        subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True)
        server.wait(timeout=30)
    return statistics.mean(rps) if rps else float("nan"), cpu * 1e6 / (2 * requests)


def probeset_variant(probeset, **extra):
    """(name, env) of the variant that runs with a refined probe set."""
    n = len(re.findall(r"^\[\[probe\]\]", open(probeset).read(), re.M))
    return (f"hotprobe, probe set `{os.path.basename(probeset)}` ({n} probes), adaptive on",
            agent_env(HOTPROBE_PROBESET=os.path.abspath(probeset), **extra))


def ratio_table(res, rate_col, rate_fmt, cost_col, cost_fmt):
    """The markdown table of interleaved rounds: per variant the median
    rate and cost, and the median (and range) of each round's ratio to
    that round's bare run."""
    bare_rate, bare_cost = res["bare"]
    print("× bare is the median of each round's ratio to that round's bare run (range in brackets).\n")
    print(f"| variant | {rate_col} | × bare | {cost_col} | × bare |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (rate, cost) in res.items():
        r = [a / b for a, b in zip(rate, bare_rate)]
        c = [a / b for a, b in zip(cost, bare_cost)]
        print(f"| {name} | {format(med(rate), rate_fmt)} | {med(r):.2f} ({min(r):.2f}–{max(r):.2f}) "
              f"| {format(med(cost), cost_fmt)} | {med(c):.2f} ({min(c):.2f}–{max(c):.2f}) |")


def card_variants(name, cards, **extra):
    """{variant name: env}: the all-functions run again under each score
    card of `cards`, side by side with the built-in one."""
    return {f"{name}, card `{os.path.basename(c)}`": agent_env(HOTPROBE_CONFIG=os.path.abspath(c), **extra) for c in cards}


def redis(rounds, probeset=None, config=None, pin=True, cards=()):
    if not shutil.which("redis-server"):
        print("(redis-server not installed: skipped)\n")
        return
    requests = 100000
    card = {"HOTPROBE_CONFIG": os.path.abspath(config)} if config else {}
    variants = {
        "bare": bare_env(),
        "hotprobe, all functions, adaptive on": agent_env(**card),
        "hotprobe, all functions, adaptive off": agent_env(HOTPROBE_ADAPTIVE="0", **card),
        **card_variants("hotprobe, all functions, adaptive on", cards),
    }
    if probeset:
        name, env = probeset_variant(probeset, **card)
        variants[name] = env
    res = {k: ([], []) for k in variants}
    for _ in range(rounds):
        for name, env in variants.items():
            rps, us = redis_once(env, requests, pin)
            res[name][0].append(rps)
            res[name][1].append(us)
    card_text = (f", score card `{config}`" if config else "") + ("" if redis_pinning(pin)[0] else ", unpinned")
    print(f"### redis-server (Debian, stripped) under `redis-benchmark -c 8 -t set,get -n {requests}` ({rounds} interleaved rounds, median{card_text})\n")
    ratio_table(res, "requests/s", ",.0f", "server CPU µs per request", ".2f")
    print("\nper round (requests/s, CPU µs per request):", file=sys.stderr)
    for name, (rps, us) in res.items():
        print(f"  {name}: " + "  ".join(f"{a:,.0f}/{b:.2f}" for a, b in zip(rps, us)), file=sys.stderr)
    print(f"\nThroughput as bare / agent: the machine swings ±20% run to run; CPU per request is the steadier figure.\n")


PYTHON = os.environ.get("PYTHON", "/root/.pyenv/versions/3.11.7/bin/python3.11")


def cpython(rounds, probeset=None, config=None, py_rounds=600, cards=()):
    """demo/pybench.py on a shared libpython: its own rate (rounds/s, timed
    inside the program, so start-up is left out) and the process's CPU time
    (start-up, discovery and patching included)."""
    if not os.path.exists(PYTHON) or "libpython" not in subprocess.run(["ldd", PYTHON], capture_output=True, text=True).stdout:
        print(f"({PYTHON} is not a Python on a shared libpython: skipped; set PYTHON)\n")
        return
    card = {"HOTPROBE_CONFIG": os.path.abspath(config)} if config else {}
    on_lib = {"HOTPROBE_MODULES": "*libpython*", **card}
    variants = {
        "bare": bare_env(),
        "hotprobe, all libpython functions, adaptive on": agent_env(**on_lib),
        **card_variants("hotprobe, all libpython functions, adaptive on", cards, HOTPROBE_MODULES="*libpython*"),
    }
    if probeset:
        name, env = probeset_variant(probeset, **card)
        variants[name] = env
    # Adaptive off is left out: every call of every function metered takes
    # some 25 times bare's CPU here, a minute a run, which then slows the
    # runs after it.
    cmd = [PYTHON, os.path.join(ROOT, "demo", "pybench.py"), str(py_rounds)]
    res = {k: ([], []) for k in variants}
    for _ in range(rounds):
        # In a fresh order each round: a run right after a heavy one (the
        # all-functions run burns twice bare's CPU and writes a
        # snapshot of 18–25 MB) was slower here, whichever variant it was.
        for name in random.sample(list(variants), len(variants)):
            env = variants[name]
            before = os.times()
            done = run(cmd, env)
            after = os.times()
            rate = re.search(r"rounds/s: ([0-9.]+)", done.stderr)
            if done.returncode != 0 or not rate:
                sys.exit(f"pybench failed under {name}: {done.stderr[-300:]}")
            res[name][0].append(float(rate.group(1)))
            res[name][1].append((after.children_user - before.children_user) + (after.children_system - before.children_system))
    card_text = f", score card `{config}`" if config else ""
    print(f"### CPython 3.11 (`demo/pybench.py {py_rounds}`, shared libpython, 5,326 probeable functions; {rounds} interleaved rounds, median{card_text})\n")
    ratio_table(res, "rounds/s", ".1f", "process CPU s", ".2f")
    print()


def code_kernel_source(n=4096, seed=7):
    """C source of n small distinct functions called in a fixed random
    order: ~600 KB of code, so the probe stresses instruction fetch and
    branch prediction the way a large program does, not one tight loop."""
    rnd = random.Random(seed)
    out = ["#include <stdint.h>", "#include <stdio.h>", "#include <time.h>", "uint64_t tab[8192];"]
    for i in range(n):
        a, b, c = rnd.randrange(1, 1 << 30), rnd.randrange(8192), rnd.randrange(1, 63)
        out.append(f"uint64_t f{i}(uint64_t x) {{ x ^= tab[(x + {b}) & 8191];")
        out.append(f" if (x & {1 << rnd.randrange(0, 20)}) x = (x << {c % 13 + 1}) ^ {a}; else x += {a};")
        for _ in range(rnd.randrange(1, 4)):
            out.append(f" x = x * {rnd.randrange(3, 1 << 20) | 1} + tab[(x >> {rnd.randrange(1, 40)}) & 8191];")
        out.append(" return x; }")
    out.append("typedef uint64_t (*fn)(uint64_t);")
    out.append("fn fns[%d] = {%s};" % (n, ",".join(f"f{i}" for i in range(n))))
    out.append("""static double now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
int main(void) {
  for (int i = 0; i < 8192; i++) tab[i] = i * 0x9E3779B97F4A7C15ULL;
  static uint32_t order[65536]; uint32_t s = 1;
  for (int i = 0; i < 65536; i++) { s = s * 1664525u + 1013904223u; order[i] = (s >> 8) %% %d; }
  double best = 1e18; uint64_t x = 1;
  for (int r = 0; r < 20; r++) { double t0 = now_ns(); for (int i = 0; i < 65536; i++) x = fns[order[i]](x); double t = now_ns() - t0; if (t < best) best = t; }
  printf("code %%.3f\\n", best / 65536); return (int)(x & 1);
}""" % n)
    return "\n".join(out)


def correlation(a, b):
    """Pearson's r; nan where it is undefined (one round, a constant column)."""
    try:
        return statistics.correlation(a, b)
    except statistics.StatisticsError:
        return float("nan")


def speed(rounds, probeset=None):
    """Does a start-up speed probe follow redis's slow and fast periods?
    Each round: the probes of bench/speed_kernels.c and a large-code kernel
    on CPU 0, then one pinned redis run with a fixed probe set and adaptive
    off (every call of the same functions timed), then the probes again."""
    if not shutil.which("redis-server") or not probeset or rounds < 1:
        print("(speed needs redis-server, --probeset and at least one round: skipped)\n")
        return
    if not redis_pinning(True)[0]:
        print("(speed needs taskset and CPUs 0 and 1: skipped)\n")
        return
    kernels = build("bench/speed_kernels.c", "speed_kernels")
    src = os.path.join(WORK, "code_kernel.c")
    with open(src, "w") as f:
        f.write(code_kernel_source())
    code = os.path.join(WORK, "code_kernel")
    subprocess.run(["gcc", "-O2", "-fno-inline", "-o", code, src], check=True)
    names = ["processCommand", "call", "setGenericCommand", "readQueryFromClient"]

    def run_probes():
        words = run(["taskset", "-c", "0", kernels], bare_env()).stdout.split()
        got = {k: float(v) for k, v in zip(words[::2], words[1::2])}
        got["code"] = float(run(["taskset", "-c", "0", code], bare_env()).stdout.split()[1])
        return got

    rows = []
    for _ in range(rounds):
        before = run_probes()
        out = os.path.join(WORK, "speed.json")
        redis_once(agent_env(HOTPROBE_ADAPTIVE="0", HOTPROBE_PROBESET=os.path.abspath(probeset), HOTPROBE_OUTPUT=out), 100000)
        after = run_probes()
        if not os.path.exists(out):
            sys.exit("speed: the agent wrote no snapshot (is the probe set readable?)")
        snap = json.load(open(out))
        os.remove(out)
        p = {x["name"]: x for x in snap["probes"] if x["count"] > 0}
        missing = [n for n in names if n not in p]
        if missing:
            sys.exit(f"speed: the probe set does not probe (or nothing called) {', '.join(missing)}")
        per_call = {n: p[n]["inclusive_ns"] / p[n]["count"] for n in names}
        probes = {k: (before[k] + after[k]) / 2 for k in before}
        probes["probe"] = snap["overhead"]["probe_ns"]
        rows.append((per_call, probes))
        time.sleep(5)
    print(f"### Speed probes against redis's own speed ({rounds} pinned rounds, probe set `{os.path.basename(probeset)}`, adaptive off)\n")
    print("Per-call inclusive times of redis functions (mean of the run) and the speed probes run just before and after (mean of the two), over all rounds.\n")
    print("| measure | least | most | most / least | correlation with `processCommand` |")
    print("| --- | ---: | ---: | ---: | ---: |")
    ref = [r[0]["processCommand"] for r in rows]
    columns = [(f"`{n}` ns per call", [r[0][n] for r in rows]) for n in names]
    labels = {"alu": "ALU chain, ns a step", "l1": "chase over 16 KiB, ns a step", "l2": "chase over 256 KiB, ns a step",
              "llc": "chase over 4 MiB, ns a step", "code": "4,096 functions, ns a call", "probe": "the agent's calibrated probe cost, ns"}
    columns += [(f"speed probe: {labels[k]}", [r[1][k] for r in rows]) for k in labels]
    for label, vals in columns:
        print(f"| {label} | {min(vals):.2f} | {max(vals):.2f} | {max(vals) / min(vals):.2f} | {correlation(vals, ref):.2f} |")
    print("\nThe chases step through a random cycle of pointers; the 4,096 functions (~600 KB of code) are called in a fixed random order.\n")


def machine_speed(rounds, seconds=60):
    """bench/machine_speed.c for `seconds`, pinned to CPU 0: whether any
    reference kernel's time moves with a server-like function's (the
    agent could then scale its thresholds by it). `rounds` is unused."""
    import math
    prog = build("bench/machine_speed.c", "machine_speed")
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") and 0 in os.sched_getaffinity(0) else []
    out = subprocess.run(pin + [prog, str(seconds)], capture_output=True, text=True, check=True).stdout
    rows = [[float(x) for x in l.split()] for l in out.splitlines() if l and not l.startswith("#")][5:]
    cols = list(zip(*rows))
    work = [math.log(x) for x in cols[4]]
    per_second = [med(w) for s in range(int(rows[-1][0]) + 1) if (w := [r[4] for r in rows if int(r[0]) == s])]
    fastest = min(per_second)
    print(f"### Reference kernels against a server-like function (`bench/machine_speed.c {seconds}`, {len(rows)} windows of ~5 ms)\n")
    print(f"`work` (2,000 calls a window, median): {med(cols[4]):.0f} ticks over the run, per-second medians "
          f"{fastest:.0f}–{max(per_second):.0f}; {sum(m > 1.5 * fastest for m in per_second)} of {len(per_second)} "
          f"seconds over 1.5× the fastest.\n")
    print("| kernel | median ticks | correlation of log ticks with `work`'s | spread of log `work` / kernel (sd) |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| (`work` alone) | {med(cols[4]):.0f} | 1.00 | {statistics.pstdev(work):.3f} |")
    for i, name in [(1, "compute"), (2, "chase"), (3, "copy")]:
        k = [math.log(x) for x in cols[i]]
        print(f"| {name} | {med(cols[i]):.0f} | {correlation(k, work):.2f} | {statistics.pstdev([a - b for a, b in zip(work, k)]):.3f} |")
    print()


def nested(rounds):
    """Compensation accuracy: tests/programs/nested.c's own account of its
    times against the agent's, per run, as the compensation test computes
    them (time spent preempted inside a spin taken out of both)."""
    prog = build("tests/programs/nested.c", "nested")
    rows = []
    for _ in range(rounds):
        out = os.path.join(WORK, "nested.json")
        env = agent_env(HOTPROBE_ADAPTIVE="0", HOTPROBE_EXCLUDE="tick_twin", HOTPROBE_OUTPUT=out)
        err = run([prog, "1000"], env).stderr
        nums = lambda prefix: [float(w) for l in err.splitlines() if l.startswith(prefix)
                               for w in l[len(prefix):].split() if re.fullmatch(r"-?[0-9.]+", w)]
        spun_outer, spun_mid, read, tick = nums("spun outer ")[:4]
        pre_outer, pre_mid = nums("preempted outer ")[:2]
        snap = json.load(open(out))
        os.remove(out)
        p = {x["name"]: x for x in snap["probes"]}
        n = p["outer"]["count"]
        mid_inh = (spun_mid - pre_mid) / n + read
        mid_incl = mid_inh + 6 * tick
        outer_inh = (spun_outer - pre_outer) / n + read
        outer_incl = outer_inh + mid_incl + 2 * tick
        per = lambda name, key, pre: (p[name][key] - pre) / n
        rows.append((snap["overhead"]["probe_ns"],
                     per("outer", "inclusive_ns", pre_outer + pre_mid) / outer_incl,
                     per("outer", "inherent_ns", pre_outer) / outer_inh,
                     per("mid", "inclusive_ns", pre_mid) / mid_incl,
                     per("mid", "inherent_ns", pre_mid) / mid_inh))
    print(f"### Compensation on `tests/programs/nested.c 1000` ({rounds} runs, median; reported / true)\n")
    print("| calibrated probe ns | outer inclusive | outer inherent | mid inclusive | mid inherent |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    cols = list(zip(*rows))
    print("| " + " | ".join([f"{med(cols[0]):.1f}"] + [f"{med(c):.3f}" for c in cols[1:]]) + " |")
    print()


def loop_hot_set(out):
    last = max(glob.glob(os.path.join(out, "loop", "iter-*")), key=lambda d: int(d.rsplit("-", 1)[1]))
    return {p["name"] for f in glob.glob(os.path.join(last, "*.json")) for p in json.load(open(f))["probes"] if p["state"] == "hot"}


def loops(rounds, cards=(), flags=()):
    import itertools
    # (name, extra iterate flags): the built-in card, each --card, each --loop-variant.
    variants = [("built-in", [])] + [(os.path.basename(c), ["--config", os.path.abspath(c)]) for c in cards]
    variants += [(v.split("=", 1)[0], shlex.split(v.split("=", 1)[1])) for v in flags]
    base = os.path.join(ROOT, "target", "redis", "loops")
    shutil.rmtree(base, ignore_errors=True)
    sets = {name: [] for name, _ in variants}
    for i in range(rounds):
        for name, card in variants:
            out = os.path.join(base, f"{name}-{i + 1}")
            cmd = [os.path.join(ROOT, "scripts", "redis.sh"), "--out", out] + (["--"] + card if card else [])
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"loop {out} failed (exit {done.returncode}): {done.stderr.strip()[-300:]}", file=sys.stderr)
                continue
            sets[name].append(loop_hot_set(out))
    print(f"### Independent loops of `scripts/redis.sh`, {rounds} rounds (final hot sets)\n")
    print("| score card | loops | pairs ≥ 0.9 | mean Jaccard | hot set | hot in some loops only |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, _ in variants:
        hs = sets[name]
        if len(hs) < 2:
            print(f"| {name} | {len(hs)} | - | - | - | - |")
            continue
        js = [len(a & b) / max(len(a | b), 1) for a, b in itertools.combinations(hs, 2)]
        common = set.intersection(*hs)
        some = sorted(set.union(*hs) - common)
        fringe = ", ".join(f"`{f}` {sum(f in h for h in hs)}" for f in some) or "–"
        sizes = f"{min(map(len, hs))}–{max(map(len, hs))}"
        print(f"| {name} | {len(hs)} | {sum(j >= 0.9 for j in js)} of {len(js)} | {statistics.mean(js):.2f} | {sizes} | {fringe} |")
    every = [h for v in sets.values() for h in v]
    if every:
        print(f"\nHot in every loop of every variant: {', '.join(f'`{f}`' for f in sorted(set.intersection(*every)))}.\n")


def demo_loops(rounds, busy=0, demo_args=""):
    kv = build("demo/kvstore.c", "kvstore")
    base = os.path.join(ROOT, "target", "demo", "loops")
    shutil.rmtree(base, ignore_errors=True)
    spinners = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(busy)]
    rows, hot3 = [], []
    try:
        for i in range(rounds):
            out = os.path.join(base, f"loop-{i + 1}")
            cmd = [CLI, "iterate", "--iterations", "5", "--no-early-stop", "--out", out, "--", kv, *shlex.split(demo_args)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"loop {out} failed (exit {done.returncode}): {done.stderr.strip()[-300:]}", file=sys.stderr)
                continue
            iters = sorted(glob.glob(os.path.join(out, "iter-*")), key=lambda d: int(d.rsplit("-", 1)[1]))
            conv = json.loads(subprocess.run([CLI, "converge", "--format", "json", *iters], capture_output=True, text=True, check=True).stdout)
            steps = conv["iterations"]
            third = steps[2]
            by3 = third["jaccard"] >= conv["thresholds"]["min_jaccard"] and third["spearman"] >= conv["thresholds"]["min_spearman"]
            rows.append((i + 1, [s["hot"] for s in steps], third["jaccard"], third["spearman"], by3, conv["settled_since"]))
            hot3.append({p["name"] for f in glob.glob(os.path.join(iters[2], "*.json")) for p in json.load(open(f))["probes"] if p["state"] == "hot"})
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    load = f", beside {busy} busy loop{'s' * (busy != 1)}" if busy else ""
    print(f"### The demo's loop, {len(rows)} runs of `hotprobe iterate --iterations 5 --no-early-stop -- kvstore {demo_args}`{load}\n")
    print("| loop | hot set, iterations 1–5 | Jaccard 2→3 | Spearman 2→3 | settled by 3 | every step met the thresholds from |")
    print("| ---: | --- | ---: | ---: | --- | ---: |")
    for n, hots, j, r, by3, since in rows:
        since = "-" if since is None else f"iteration {since + 1}"
        print(f"| {n} | {', '.join(map(str, hots))} | {j:.3f} | {r:.3f} | {'yes' if by3 else '**no**'} | {since} |")
    if hot3:
        some = sorted(set.union(*hot3) - set.intersection(*hot3))
        print(f"\nSettled by iteration 3: {sum(r[4] for r in rows)} of {len(rows)}. Hot in iteration 3 of some loops only: "
              f"{', '.join(f'`{f}` {sum(f in h for h in hot3)}' for f in some) or '–'}.\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", nargs="?", default="all", choices=["call-cost", "install", "many", "nested", "redis", "cpython", "speed", "kernel", "report", "loops", "demo-loops", "machine-speed", "all"])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--probeset", help="redis: also run with this probe set (hotprobe refine's output); speed: the probe set its redis runs use")
    ap.add_argument("--config", help="redis, cpython: the agent's TOML config (HOTPROBE_CONFIG) for every agent variant, e.g. a [hotspot] score card")
    ap.add_argument("--no-pin", action="store_true", help="redis: leave the server and redis-benchmark to the scheduler (by default the server runs on CPU 0, the load on CPU 1)")
    ap.add_argument("--py-rounds", type=int, default=600, help="cpython: pybench's rounds per run (600: about 2 s bare here)")
    ap.add_argument("--card", action="append", default=[], help="loops: also run loops with this agent config; redis, cpython: also run all functions under it (repeatable)")
    ap.add_argument("--loop-variant", action="append", default=[], metavar="NAME=FLAGS", help="loops: also run loops with these iterate flags, e.g. second-chance=--second-chance (repeatable)")
    ap.add_argument("--busy", type=int, default=0, help="demo-loops: run this many busy loops beside the demo")
    ap.add_argument("--demo-args", default="", help="demo-loops: arguments for demo/kvstore (e.g. '--requests 150000 --keys 20000')")
    ap.add_argument("--max-load", type=float, default=1.5, help="report: wait for a 1-minute load average under this")
    a = ap.parse_args()
    if not os.path.exists(AGENT):
        sys.exit("build first: cargo build --release --workspace")
    print(f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPUs ({open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}).\n")
    extra = {"redis": {"probeset": a.probeset, "config": a.config, "pin": not a.no_pin, "cards": a.card}, "cpython": {"probeset": a.probeset, "config": a.config, "py_rounds": a.py_rounds, "cards": a.card}, "speed": {"probeset": a.probeset}, "report": {"max_load": a.max_load}, "loops": {"cards": a.card, "flags": a.loop_variant}, "demo-loops": {"busy": a.busy, "demo_args": a.demo_args}}
    for name, f in (("call-cost", call_cost), ("install", install), ("many", many), ("nested", nested), ("redis", redis), ("cpython", cpython), ("speed", speed), ("kernel", kernel),
                    ("report", report), ("loops", loops), ("demo-loops", demo_loops), ("machine-speed", machine_speed)):
        if a.what == name or (a.what == "all" and name not in ("loops", "demo-loops", "machine-speed")):
            f(a.rounds, **extra.get(name, {}))
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
