"""Benchmark: where the time of `cnnspec verify -j N` goes (issue 8).

Runs `cnnspec verify examples/*.yaml --json - -j N` as whole processes, alternating the
configurations round by round so that load from other jobs on the machine hits all alike, and
records per configuration: wall time, CPU time of the process tree (user + sys, from
getrusage of the children), CPU utilisation (CPU / wall, in cores), and the per-step seconds
every report carries (`timings`: import, build, transfer, export, run, compare) summed over
the specs. Medians over the rounds.

Configurations: `-j 1`; `-j 2`; `-j 2` with one thread per framework per worker
(OMP_NUM_THREADS=1, TF intra/inter-op threads 1), to see whether the workers fight over the
cores.

Usage: python bench/bench_verify_jobs.py [--rounds N] [--specs examples/*.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
              "TF_NUM_INTEROP_THREADS": "1"}
CONFIGURATIONS = {
    "-j 1": (["-j", "1"], {}),
    "-j 2": (["-j", "2"], {}),
    "-j 2, 1 thread/worker": (["-j", "2"], ONE_THREAD),
}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(specs: list[str], flags: list[str], extra_env: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **extra_env}
    cpu_before = _children_cpu()
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "cnnspec", "verify", *specs, "--json", "-", "--no-progress", *flags],
                            cwd=ROOT, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - started
    cpu = _children_cpu() - cpu_before
    if result.returncode != 0:
        raise SystemExit(f"verify exited {result.returncode}:\n{result.stderr[-2000:]}")
    document = json.loads(result.stdout)
    steps: dict[str, float] = {}
    for report in document["reports"]:
        for step, seconds in (report.get("timings") or {}).items():
            steps[step] = steps.get(step, 0.0) + seconds
    return {"wall": wall, "cpu": cpu, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--specs", nargs="+", default=sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").glob("*.yaml")))
    parser.add_argument("--only", nargs="+", default=list(CONFIGURATIONS), help="configurations to run")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {name: [] for name in args.only}
    for round_number in range(args.rounds):
        for name in args.only:
            flags, env = CONFIGURATIONS[name]
            outcome = run_once(args.specs, flags, env)
            runs[name].append(outcome)
            print(f"round {round_number + 1} {name}: wall {outcome['wall']:.1f} s, cpu {outcome['cpu']:.1f} s", flush=True)
    print(f"\n{len(args.specs)} specs, {args.rounds} rounds, configurations alternated; medians")
    print("| configuration | wall s | CPU s (user+sys) | cores busy (CPU/wall) | wall vs -j 1 |")
    print("|---|---|---|---|---|")
    base = statistics.median(r["wall"] for r in runs[args.only[0]])
    for name, outcomes in runs.items():
        wall = statistics.median(r["wall"] for r in outcomes)
        cpu = statistics.median(r["cpu"] for r in outcomes)
        print(f"| `{name}` | {wall:.1f} | {cpu:.1f} | {cpu / wall:.2f} | {wall / base:.2f} |")
    steps = sorted({step for outcomes in runs.values() for r in outcomes for step in r["steps"]})
    print("\nper-step seconds summed over the specs (median over rounds):")
    print("| step | " + " | ".join(args.only) + " |")
    print("|---|" + "---|" * len(args.only))
    for step in steps:
        cells = [f"{statistics.median(r['steps'].get(step, 0.0) for r in runs[name]):.1f}" for name in args.only]
        print(f"| {step} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
