"""Benchmark: `cnnspec verify` on ResNet-50 (bench/resnet50.yaml, 174 layers) against its floor.

Method: fresh processes, alternated so that machine noise hits both alike, after one warm-up of
each (OS file cache warm):

* verify: ``python -m cnnspec verify bench/resnet50.yaml --json FILE --no-progress``.
* floor: a plain script doing only the frameworks' unavoidable work for the same proof: import
  torch, keras, onnx, onnxruntime and tf2onnx; build the same generated models (the same
  source that ``cnnspec build`` writes); export each with the same exporters and the same
  per-layer outputs (torch.onnx legacy, tf2onnx ``from_keras`` with ``optimizers={}``); run
  each graph once in onnxruntime.  No weight seeding, transfer, checker or comparison.

It reports the medians, the ratio verify / floor (goal <= 1.2) and the median of the
``--json`` timing breakdown, and times the torch export of the per-layer ResNet-50 once with
the legacy and once with the dynamo exporter.  ``--write`` replaces the "verify" section of
bench/README.md with the figures (other sections are kept).

Usage: python bench/bench_verify.py [--runs N] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "bench" / "resnet50.yaml"
README = ROOT / "bench" / "README.md"

FLOOR_SCRIPT = r'''
import os, sys, time, json, warnings, logging
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
warnings.filterwarnings("ignore")
T = {}
start = time.perf_counter()
import numpy as np, torch, tensorflow as tf, keras, onnx, onnxruntime as ort, tf2onnx
logging.getLogger("torch.onnx").setLevel(logging.ERROR); logging.getLogger("tf2onnx").setLevel(logging.ERROR)
from cnnspec.targets.build import build
from cnnspec.engine.plan import resolve
T["import"] = time.perf_counter() - start
plan = resolve(sys.argv[1]); names = [l.name for l in plan.layers]; out = sys.argv[2]
t = time.perf_counter(); tm = build(plan, "torch"); km = build(plan, "keras"); T["build"] = time.perf_counter() - t

class Tap(torch.nn.Module):
    def __init__(self, m): super().__init__(); self.m = m
    def forward(self, x):
        d = self.m.forward_layers(x); return tuple(d[n] for n in names)

x = np.random.default_rng(0).standard_normal((2, *plan.input_shape)).astype(np.float32)
t = time.perf_counter()
torch.onnx.export(Tap(tm).eval(), (torch.from_numpy(x),), out + "/t.onnx", dynamo=False, input_names=["input"],
                  output_names=names, opset_version=18)
T["export_torch"] = time.perf_counter() - t
t = time.perf_counter()
tap = keras.Model(km.inputs, [km.get_layer(n).output for n in names])
sig = (tf.TensorSpec((None, *plan.input_shape[1:], plan.input_shape[0]), tf.float32, name="input"),)
tf2onnx.convert.from_keras(tap, input_signature=sig, opset=18, optimizers={}, output_path=out + "/k.onnx")
T["export_keras"] = time.perf_counter() - t
t = time.perf_counter()
s = ort.InferenceSession(out + "/t.onnx", providers=["CPUExecutionProvider"]); s.run(None, {"input": x})
T["run_torch"] = time.perf_counter() - t
t = time.perf_counter()
s = ort.InferenceSession(out + "/k.onnx", providers=["CPUExecutionProvider"]); s.run(None, {"input": np.moveaxis(x, 1, -1).copy()})
T["run_keras"] = time.perf_counter() - t
print("JSON" + json.dumps(T))
'''

EXPORTER_SCRIPT = r'''
import os, sys, time, json, tempfile
from cnnspec.verifier.onnx_export import import_frameworks, export_torch
import_frameworks()
import numpy as np
from cnnspec.targets.build import build
from cnnspec.engine.plan import resolve
plan = resolve(sys.argv[1]); names = [l.name for l in plan.layers]
model = build(plan, "torch")
x = np.random.default_rng(0).standard_normal((2, *plan.input_shape)).astype(np.float32)
t = time.perf_counter()
graph = export_torch(model, names, x, dynamo=sys.argv[2] == "dynamo")
elapsed = time.perf_counter() - t
size = graph.proto.ByteSize() + sum(value.nbytes for value in graph.weights.values())
print("JSON" + json.dumps({"seconds": elapsed, "bytes": size, "files": ["in memory"]}))
'''


TOLERANCE_NOTE = """
Tolerance (defaults `--atol 1e-4 --rtol 1e-4`; an element passes if |keras − torch| ≤ atol + rtol·|torch|):
the two float32 graphs of the same network differ by 0 (plain convolutions: both run the same ORT
kernel) to 1.2e-6 (BatchNorm, dense) on every example, and by at most {max_abs:.1e} on ResNet-50 (its deepest
BatchNorm layers; mean about 1e-6). Real porting mistakes are >= 1e-3: the negative controls measure 3.5
(symmetric padding for 'same' at stride 2), 0.16 (one kernel element +0.05), 5.8 (BatchNorm epsilon 1e-3
vs 1e-5 on small variances) and 3.9 (flatten order). 1e-4 leaves a ~6x margin over ResNet-50's float
noise and stays an order of magnitude below the smallest real mistake; pass `--atol/--rtol` for deeper
or larger-magnitude networks.
"""


def _run(args: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"command failed ({result.returncode}): {' '.join(args)}\n{result.stderr[-3000:]}")
    return elapsed, result.stdout


def _json_line(stdout: str) -> dict:
    return json.loads(next(line[4:] for line in stdout.splitlines() if line.startswith("JSON")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="write the figures into bench/README.md")
    args = parser.parse_args()
    if not SPEC.exists():
        subprocess.run([sys.executable, str(ROOT / "bench" / "make_resnet50.py"), str(SPEC)], check=True)
    python = sys.executable
    verify_times, floor_times, breakdowns, floor_steps = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as workdir:
        report_path = Path(workdir) / "report.json"
        verify_cmd = [python, "-m", "cnnspec", "verify", str(SPEC), "--json", str(report_path), "--no-progress"]
        floor_cmd = [python, "-c", FLOOR_SCRIPT, str(SPEC), workdir]
        _run(verify_cmd), _run(floor_cmd)  # warm-up
        for run in range(args.runs):
            seconds, _ = _run(verify_cmd)
            verify_times.append(seconds)
            report = json.loads(report_path.read_text())
            assert report["ok"], "ResNet-50 did not verify"
            breakdowns.append(report["timings"])
            seconds, stdout = _run(floor_cmd)
            floor_times.append(seconds)
            floor_steps.append(_json_line(stdout))
            print(f"run {run + 1}: verify {verify_times[-1]:.2f} s, floor {floor_times[-1]:.2f} s", flush=True)
        max_abs = report["max_abs_diff"]
        max_rel = report["max_rel_diff"]
        worst_layer = max(report["layers"], key=lambda layer: layer["max_abs_diff"] or 0.0)
    exporters = {}
    for exporter in ("legacy", "dynamo"):
        _, stdout = _run([python, "-c", EXPORTER_SCRIPT, str(SPEC), exporter])
        exporters[exporter] = _json_line(stdout)

    verify_median, floor_median = statistics.median(verify_times), statistics.median(floor_times)
    ratio = verify_median / floor_median
    steps = {key: statistics.median(b[key] for b in breakdowns) for key in breakdowns[0]}
    floor_step_medians = {key: statistics.median(s[key] for s in floor_steps) for key in floor_steps[0]}
    lines = [
        "## verify",
        "",
        "Goal: `cnnspec verify` on ResNet-50 (`bench/resnet50.yaml`, 174 layers, 25,557,032 trainable + 53,120",
        "BatchNorm statistics) as a whole process within 1.2× of its floor.",
        "",
        f"Method: `python bench/bench_verify.py --runs {args.runs} --write` — fresh processes, verify and floor",
        "alternated, one warm-up each, medians of wall time. The floor is a plain script doing only the",
        "frameworks' unavoidable work for the same proof: import torch/keras/onnx/onnxruntime/tf2onnx, build the",
        "same generated models, export each with the same exporters and the same per-layer outputs (torch.onnx",
        "legacy; tf2onnx `from_keras`, `optimizers={}`), one onnxruntime inference each. Verify adds seeded",
        "weights + transfer, `onnx.checker` on both graphs, parameter counting and the per-layer comparison.",
        "The machine is shared with other jobs, so single runs vary by ±20 %.",
        "",
        "| process | median s | runs (s) |",
        "|---|---|---|",
        f"| `cnnspec verify resnet50.yaml` | {verify_median:.2f} | {', '.join(f'{t:.2f}' for t in verify_times)} |",
        f"| floor (plain script) | {floor_median:.2f} | {', '.join(f'{t:.2f}' for t in floor_times)} |",
        f"| **ratio verify / floor** | **{ratio:.2f}×** | goal ≤ 1.2× |",
        "",
        "Step medians (s), verify's `--json` timings vs the floor script's own:",
        "",
        "| step | verify | floor |",
        "|---|---|---|",
    ]
    for key, value in steps.items():
        floor_value = floor_step_medians.get(key)
        lines.append(f"| {key} | {value:.2f} | {'—' if floor_value is None else f'{floor_value:.2f}'} |")
    lines += [
        "",
        f"Result: verified ok; max abs diff over all 174 layers {max_abs:.2e} (worst layer `{worst_layer['name']}`), "
        f"max rel diff (elements with |x| ≥ atol) {max_rel:.2e}.",
        "",
        "Torch exporter, ResNet-50 with 174 per-layer outputs (one run each, `onnx_export.export_torch`):",
        "",
        "| exporter | seconds | output |",
        "|---|---|---|",
    ]
    for exporter, data in exporters.items():
        lines.append(f"| {exporter} (`dynamo={exporter == 'dynamo'}`) | {data['seconds']:.2f} | "
                     f"{', '.join(data['files'])}, {data['bytes'] / 1e6:.0f} MB |")
    lines += ["", TOLERANCE_NOTE.format(max_abs=max_abs).strip(), ""]
    section = "\n".join(lines)
    print(section)
    if args.write:
        _write_section(section)


def _write_section(section: str) -> None:
    """Replace this benchmark's section of bench/README.md (or append it); other sections are kept."""
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    pattern = re.compile(r"^## verify\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    README.write_text(text)


if __name__ == "__main__":
    main()
