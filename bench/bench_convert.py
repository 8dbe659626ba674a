"""Benchmark the importers and the Keras <-> PyTorch conversion (issue 11).

Measured in one process, frameworks imported first (their import time is excluded and reported):

* ``from_keras`` on keras.applications ResNet-50 (weights=None, 224x224) and ``from_torch`` on the
  torchvision-layout ResNet-50 of tests/torch_zoo.py (3x224x224): import time beyond the frameworks;
* Keras -> PyTorch conversion (from_keras + build + transfer_weights from the original) on ResNet-50 and
  MobileNetV2, side by side with the peer route tf2onnx -> onnx2torch on the same Keras model;
* PyTorch -> Keras conversion (from_torch + build + transfer_weights) on the torchvision-layout ResNet-18
  and MobileNetV2-style modules.

Medians of --runs runs.  Usage (from the repository root)::

    PYTHONPATH=. python bench/bench_convert.py --runs 3 [--json bench/convert.json] [--no-peer]

The peer route needs ``pip install --no-deps onnx2torch`` (kept out of the project and its lock).  onnx2torch imports torchvision
for its NMS / RoIAlign converters only; torchvision does not import with the CPU torch here, so a stub
module stands in for it (those converters are never used by these models).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def timed(function, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default=None)
    parser.add_argument("--no-peer", action="store_true", help="skip tf2onnx -> onnx2torch")
    args = parser.parse_args()
    figures: dict[str, object] = {"runs": args.runs}

    start = time.perf_counter()
    from cnnspec.verifier.onnx_export import import_frameworks, quiet_warnings

    import_frameworks()
    figures["framework_import_s"] = round(time.perf_counter() - start, 2)

    import keras
    import numpy as np
    import torch
    import torch_zoo as Z

    import cnnspec
    from cnnspec.weights.transfer import randomize

    def keras_to_torch(model):
        spec = cnnspec.from_keras(model)
        converted = cnnspec.build(spec, "torch").eval()
        cnnspec.transfer_weights(model, converted, spec)
        return converted

    def torch_to_keras(module, shape):
        spec = cnnspec.from_torch(module, shape)
        converted = cnnspec.build(spec, "keras")
        cnnspec.transfer_weights(module, converted, spec)
        return converted

    rows = []
    keras_models = {
        "ResNet50": keras.applications.ResNet50(weights=None),
        "MobileNetV2": keras.applications.MobileNetV2(weights=None),
    }
    for model in keras_models.values():
        randomize(model, 0)
    resnet50_torch = Z.ResNet(Z.Bottleneck, (3, 4, 6, 3), num_classes=1000).eval()
    for label, call in (
        ("from_keras_resnet50", lambda: cnnspec.from_keras(keras_models["ResNet50"])),
        ("from_torch_resnet50", lambda: cnnspec.from_torch(resnet50_torch, (3, 224, 224))),
    ):
        first, _ = timed(call, 1)  # includes the lazy imports (torch.fx, fake tensors, the importer modules)
        seconds, _ = timed(call, args.runs + 2)
        figures[f"{label}_first_s"] = round(first, 3)
        figures[f"{label}_s"] = round(seconds, 3)

    peer = None if args.no_peer else _peer_route()
    for name, model in keras_models.items():
        seconds, converted = timed(lambda model=model: keras_to_torch(model), args.runs)
        x = np.random.default_rng(0).standard_normal((1, 224, 224, 3)).astype(np.float32)
        with torch.no_grad():
            got = converted(torch.from_numpy(np.moveaxis(x, -1, 1).copy())).numpy()
        diff = float(np.abs(got - np.asarray(model(x))).max())
        params = sum(p.numel() for p in converted.parameters()) + sum(
            b.numel() for n, b in converted.named_buffers() if n.endswith(("running_mean", "running_var"))
        )
        row = {
            "direction": "keras->torch",
            "model": name,
            "cnnspec_s": round(seconds, 3),
            "max_abs_diff": diff,
            "params": int(params),
            "keras_params": int(model.count_params()),
        }
        if peer is not None:
            with quiet_warnings():
                peer_seconds, peer_model = timed(lambda model=model: peer(model), max(1, args.runs - 1))
            row["peer_s"] = round(peer_seconds, 3)
            row["ratio"] = round(seconds / peer_seconds, 4)
            row["peer_params"] = int(sum(p.numel() for p in peer_model.parameters()))
        rows.append(row)

    for name, module, shape in [
        ("ResNet18-style", Z.ResNet(num_classes=1000), (3, 224, 224)),
        ("MobileNetV2-style", Z.MobileNetV2(num_classes=1000), (3, 224, 224)),
    ]:
        module.eval()
        randomize(module, 0)
        seconds, converted = timed(lambda module=module, shape=shape: torch_to_keras(module, shape), args.runs)
        x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        diff = float(np.abs(np.asarray(converted(np.moveaxis(x, 1, -1))) - expected).max())
        rows.append(
            {
                "direction": "torch->keras",
                "model": name,
                "cnnspec_s": round(seconds, 3),
                "max_abs_diff": diff,
                "params": int(converted.count_params()),
            }
        )
    figures["conversions"] = rows

    print(f"framework import: {figures['framework_import_s']} s (excluded below)")
    print(
        f"from_keras ResNet-50: {figures['from_keras_resnet50_s']} s "
        f"(first call {figures['from_keras_resnet50_first_s']} s)"
        f"   from_torch ResNet-50: {figures['from_torch_resnet50_s']} s (first call "
        f"{figures['from_torch_resnet50_first_s']} s); medians of {args.runs + 2}"
    )
    for row in rows:
        extra = f"   peer {row['peer_s']} s, ratio {row['ratio']}" if "peer_s" in row else ""
        print(
            f"{row['direction']:13} {row['model']:18} {row['cnnspec_s']:7.3f} s  max diff {row['max_abs_diff']:.2e}"
            f"  params {row['params']:,}{extra}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def _peer_route():
    """tf2onnx -> onnx2torch, as a user without cnnspec would convert a Keras model to PyTorch."""
    if "torchvision" not in sys.modules:  # see the module docstring
        stub = types.ModuleType("torchvision")
        stub.ops = types.ModuleType("torchvision.ops")
        stub.ops.roi_align = None
        sys.modules["torchvision"] = stub
        sys.modules["torchvision.ops"] = stub.ops
    try:
        import onnx2torch
    except ImportError:
        print("onnx2torch not installed: skipping the peer route (pip install 'cnnspec[bench]')")
        return None
    import tensorflow as tf
    import tf2onnx

    def convert(model):
        signature = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="input"),)
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=13)  # onnx2torch: <= 16
        return onnx2torch.convert(proto)

    return convert


if __name__ == "__main__":
    raise SystemExit(main())
