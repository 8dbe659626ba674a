"""The peer route as a whole process, for comparison with `cnnspec convert MODEL.keras --to torch`:
load the Keras file, tf2onnx (opset 13, default optimizers), onnx2torch, save the torch model's state_dict.
It proves nothing about equivalence.  See bench_convert.py for the torchvision stub.

    PYTHONPATH=. python bench/peer_keras_to_torch.py MODEL.keras OUT.pt
"""

from __future__ import annotations

import os
import sys
import types

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(source: str, target: str) -> int:
    stub = types.ModuleType("torchvision")
    stub.ops = types.ModuleType("torchvision.ops")
    stub.ops.roi_align = None
    sys.modules.update({"torchvision": stub, "torchvision.ops": stub.ops})
    from cnnspec.verifier.onnx_export import import_frameworks

    import_frameworks()  # the same quiet imports and tf2onnx/numpy-2 patch cnnspec uses
    import keras
    import onnx2torch
    import tensorflow as tf
    import tf2onnx
    import torch

    model = keras.saving.load_model(source, compile=False)
    signature = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=13)
    converted = onnx2torch.convert(proto)
    torch.save(converted.state_dict(), target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
