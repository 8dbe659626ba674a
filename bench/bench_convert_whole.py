"""Benchmark (issue 11): the whole ``cnnspec convert`` command, per-layer proof included, as a process.

* Keras -> PyTorch, against the peer route that proves nothing (``bench/peer_keras_to_torch.py``:
  load, tf2onnx with its default optimizers, onnx2torch, save), on keras.applications ResNet-50 and
  MobileNetV2 (``weights=None``, 224x224, Keras' initialisers seeded, saved once as ``.keras``).
  Goal: no slower than the peer.  Needs onnx2torch on ``--peer-path`` (``pip install --no-deps
  --target DIR onnx2torch``; it stays out of the project's environment).
* PyTorch -> Keras on the torchvision-layout ResNet-18 and MobileNetV2 of ``tests/torch_zoo.py``
  (``file.py:factory``, 3x224x224).  Goal: <= 15 s.

Method: fresh processes, one warm-up round, then the commands alternated round by round (cnnspec,
peer, cnnspec, peer, ...) so that the machine's noise hits both; medians of wall time; every cnnspec
run must exit 0 (its proof passed).  Run from the repository root::

    PYTHONPATH=. python bench/bench_convert_whole.py --runs 3 --peer-path DIR
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERAS_MODELS = ("ResNet50", "MobileNetV2")
TORCH_MODELS = ("resnet18", "mobilenet_v2")

SAVE = """
import sys, keras
keras.utils.set_random_seed(0)
getattr(keras.applications, sys.argv[1])(weights=None).save(sys.argv[2])
"""


def timed(command: list[str], env: dict) -> tuple[float, int]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-2000:])
    return time.perf_counter() - start, done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--peer-path", type=Path, help="a directory holding onnx2torch (no peer runs without it)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    peer_env = {**env, "PYTHONPATH": f"{ROOT}{os.pathsep}{args.peer_path}"} if args.peer_path else None
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        jobs: dict[str, list[str]] = {}
        peers: dict[str, list[str]] = {}
        for name in KERAS_MODELS:
            saved = work / f"{name}.keras"
            subprocess.run([sys.executable, "-c", SAVE, name, str(saved)], check=True, env=env, capture_output=True)
            jobs[f"{name} keras->torch"] = [
                sys.executable, "-m", "cnnspec", "convert", str(saved), "--to", "torch",
                "-o", str(work / f"out_{name}"), "--force", "--no-progress",
            ]
            peers[f"{name} keras->torch"] = [
                sys.executable, str(ROOT / "bench" / "peer_keras_to_torch.py"), str(saved), str(work / f"{name}.pt"),
            ]
        for name in TORCH_MODELS:
            jobs[f"{name} torch->keras"] = [
                sys.executable, "-m", "cnnspec", "convert", f"{ROOT / 'tests' / 'torch_zoo.py'}:{name}",
                "--to", "keras", "--input-shape", "3,224,224", "-o", str(work / f"out_{name}"), "--force",
                "--no-progress",
            ]
        times: dict[str, list[float]] = {key: [] for key in jobs}
        peer_times: dict[str, list[float]] = {key: [] for key in peers}
        for round_index in range(args.runs + 1):
            for key, command in jobs.items():
                seconds, code = timed(command, env)
                if code != 0:
                    print(f"{key}: cnnspec convert exited {code}")
                    return 1
                if round_index:
                    times[key].append(seconds)
                if key in peers and peer_env is not None:
                    seconds, code = timed(peers[key], peer_env)
                    if code != 0:
                        print(f"{key}: the peer route exited {code}")
                        return 1
                    if round_index:
                        peer_times[key].append(seconds)
            load = os.getloadavg()[0]
            print(f"round {round_index} done (warm-up)" if not round_index else f"round {round_index}; load {load:.1f}")
    print("\n| conversion | cnnspec convert s (median) | runs | peer s (median) | runs | ratio |")
    print("|---|---|---|---|---|---|")
    for key, runs in times.items():
        ours = statistics.median(runs)
        theirs = peer_times.get(key) or []
        if theirs:
            peer = statistics.median(theirs)
            print(f"| {key} | {ours:.2f} | {', '.join(f'{t:.2f}' for t in runs)} | {peer:.2f} | "
                  f"{', '.join(f'{t:.2f}' for t in theirs)} | {ours / peer:.2f}x |")
        else:
            print(f"| {key} | {ours:.2f} | {', '.join(f'{t:.2f}' for t in runs)} | — | — | — |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
