"""Benchmark: `cnnspec explain` on a ResNet-50-sized spec, as a whole process.

Method: run `python -m cnnspec explain bench/resnet50.yaml` (table) and `--json` N times each as
fresh processes, after one warm-up run (so the OS file cache is warm), and report the median and
min wall time. A baseline of `python -c pass` measured in the same run gives the interpreter's own
start-up, so the ratio is robust to machine noise. It also asserts that neither torch nor
tensorflow was imported. Goal (issue 2): <= 0.5 s per run.

Usage: python bench/bench_explain.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "bench" / "resnet50.yaml"


def time_command(args: list[str], runs: int) -> list[float]:
    subprocess.run(args, capture_output=True, check=True, cwd=ROOT)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(args, capture_output=True, check=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    python = sys.executable
    check = subprocess.run(
        [python, "-c", "import sys, cnnspec.cli.main as c, contextlib, io\n"
         f"sys.argv=['cnnspec','explain',{str(SPEC)!r}]\n"
         "with contextlib.redirect_stdout(io.StringIO()): c.main()\n"
         "print([m for m in ('torch','tensorflow','keras','numpy') if m in sys.modules])"],
        capture_output=True, text=True, check=True, cwd=ROOT)
    rows = [
        ("python -c pass (interpreter start-up)", [python, "-c", "pass"]),
        ("cnnspec explain resnet50.yaml", [python, "-m", "cnnspec", "explain", str(SPEC)]),
        ("cnnspec explain --json resnet50.yaml", [python, "-m", "cnnspec", "explain", "--json", str(SPEC)]),
        ("cnnspec validate resnet50.yaml", [python, "-m", "cnnspec", "validate", str(SPEC)]),
    ]
    results = {name: time_command(cmd, args.runs) for name, cmd in rows}
    base = statistics.median(results[rows[0][0]])
    print(f"runs per command: {args.runs}; heavy modules imported by explain: {check.stdout.strip()}")
    print(f"{'command':40s} {'median s':>9s} {'min s':>7s} {'x start-up':>10s}")
    for name, times in results.items():
        median = statistics.median(times)
        print(f"{name:40s} {median:9.3f} {min(times):7.3f} {median / base:10.2f}")


if __name__ == "__main__":
    main()
