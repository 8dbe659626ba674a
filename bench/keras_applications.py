"""Every keras.applications model through from_keras -> PyTorch, checked against Keras' own output.

For each model (weights=None, its default input size, classifier_activation=None where accepted,
seeded non-degenerate weights): import, build in PyTorch, copy the ORIGINAL's weights, run both on one
seeded input and record parameters (cnnspec's spec vs ``count_params()``), seconds (import + build +
weights), and the max abs diff of the outputs relative to their scale -- or the importer's refusal
(a layer type the catalog does not have yet, named).

    PYTHONPATH=. python bench/keras_applications.py [--only ResNet50,VGG16] [--json bench/keras_applications.json]
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def application_names(keras) -> list[str]:
    names = []
    for name in dir(keras.applications):
        value = getattr(keras.applications, name)
        if name[0].isupper() and callable(value) and not inspect.ismodule(value):
            names.append(name)
    return sorted(names)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="comma-separated model names")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from cnnspec.verifier.onnx_export import import_frameworks

    import_frameworks()
    import keras
    import numpy as np
    import torch

    import cnnspec
    from cnnspec.importers.common import UnsupportedModel
    from cnnspec.weights.transfer import randomize

    names = args.only.split(",") if args.only else application_names(keras)
    rows = []
    for name in names:
        factory = getattr(keras.applications, name)
        kwargs = {"weights": None}
        if "classifier_activation" in inspect.signature(factory).parameters:
            kwargs["classifier_activation"] = None
        model = factory(**kwargs)
        if None in model.input_shape[1:]:  # e.g. MobileNetV3's default: give it its documented 224x224
            model = factory(input_shape=(224, 224, 3), **kwargs)
        randomize(model, 0)
        row = {"model": name, "keras_params": int(model.count_params())}
        start = time.perf_counter()
        try:
            spec = cnnspec.from_keras(model)
            converted = cnnspec.build(spec, "torch").eval()
            cnnspec.transfer_weights(model, converted, spec)
        except UnsupportedModel as error:
            row.update(status="refused", reason=str(error).splitlines()[0])
        else:
            row["seconds"] = round(time.perf_counter() - start, 2)
            row["spec_params"] = int(cnnspec.resolve(spec).total_params)
            x = np.random.default_rng(0).standard_normal((1, *model.input_shape[1:])).astype(np.float32)
            expected = np.asarray(model(x, training=False))
            with torch.no_grad():
                got = converted(torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))).numpy()
            scale = max(1.0, float(np.abs(expected).max()))
            row["max_abs_diff_rel"] = float(np.abs(got - expected).max() / scale)
            row["status"] = (
                "ok" if row["max_abs_diff_rel"] <= 1e-4 and row["spec_params"] == row["keras_params"] else "DIFFERS"
            )
        rows.append(row)
        print(json.dumps(row), flush=True)
        del model
        gc.collect()
        keras.backend.clear_session()
    ok = sum(row["status"] == "ok" for row in rows)
    print(f"{ok}/{len(rows)} converted and equal; {sum(r['status'] == 'refused' for r in rows)} refused")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
