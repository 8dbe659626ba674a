"""Open-size specs of real networks for the any-size tests and the benchmark (no framework imported).

* :func:`mobilenet_v2` -- MobileNetV2 (Sandler et al. 2018) as TensorFlow builds it: every
  strided convolution pads 'same' (SAME_UPPER), so at an odd input size the padding differs
  from the one at 224; ``size: [null, null]``, reference size 224×224.
* :func:`resnet50` -- torchvision's ResNet-50 (bench/resnet50.yaml) with its input size opened,
  and with ``same=True`` the TensorFlow-style variant whose k×k convolutions and max pool pad
  'same' instead of k // 2 (the runtime-padding model the benchmark times).
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

# MobileNetV2's inverted residual stages: expansion t, output channels c, repeats n, first stride s.
MOBILENET_V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _divisible(value: float, divisor: int = 8) -> int:
    """The channel rounding of keras.applications / torchvision MobileNetV2."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def opened(document: dict, reference: list[int] | None = None) -> dict:
    """``document`` with every input axis open (``null``), planned at ``reference`` (default: its size)."""
    size = document["input"]["size"]
    return {
        **document,
        "input": {
            **document["input"],
            "size": [None] * len(size),
            "reference_size": list(reference or document["input"].get("reference_size") or size),
        },
    }


def mobilenet_v2(alpha: float = 1.0, classes: int = 1000) -> dict:
    """MobileNetV2 with 'same' padding, width multiplier ``alpha``, any input size."""
    layers: list[dict] = []

    def conv_bn(name: str, filters: int, kernel: int, stride: int, source: str | None, act: bool):
        conv = {
            "name": name,
            "type": "conv2d",
            "filters": filters,
            "kernel_size": kernel,
            "stride": stride,
            "padding": "same",
            "bias": False,
        }
        if source:
            conv["inputs"] = [source]
        layers.extend([conv, {"name": f"{name}_bn", "type": "batch_norm", "epsilon": 0.001}])
        if act:
            layers.append({"name": f"{name}_relu", "type": "relu6"})
        return layers[-1]["name"]

    channels = _divisible(32 * alpha)
    x = conv_bn("stem", channels, 3, 2, None, True)
    block = 0
    for expansion, out, repeats, first_stride in MOBILENET_V2_STAGES:
        out_channels = _divisible(out * alpha)
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            name = f"block{block}"
            source = x
            if expansion != 1:
                x = conv_bn(f"{name}_expand", channels * expansion, 1, 1, x, True)
            layers.append(
                {
                    "name": f"{name}_dw",
                    "type": "depthwise_conv2d",
                    "kernel_size": 3,
                    "stride": stride,
                    "padding": "same",
                    "bias": False,
                    "inputs": [x],
                }
            )
            layers.append({"name": f"{name}_dw_bn", "type": "batch_norm", "epsilon": 0.001})
            layers.append({"name": f"{name}_dw_relu", "type": "relu6"})
            x = conv_bn(f"{name}_project", out_channels, 1, 1, f"{name}_dw_relu", False)
            if stride == 1 and channels == out_channels:
                layers.append({"name": f"{name}_add", "type": "add", "inputs": [source, x]})
                x = f"{name}_add"
            channels = out_channels
            block += 1
    last = _divisible(1280 * alpha) if alpha > 1.0 else 1280
    x = conv_bn("head", last, 1, 1, x, True)
    layers.append({"name": "pool", "type": "global_avg_pool"})
    layers.append({"name": "logits", "type": "dense", "units": classes, "activation": "softmax"})
    return {
        "cnnspec": 1,
        "name": "mobilenet_v2",
        "input": {"channels": 3, "size": [None, None], "reference_size": [224, 224]},
        "layers": layers,
    }


def resnet50(same: bool = False) -> dict:
    """bench/resnet50.yaml with its input size opened; ``same``: k×k layers pad 'same', not k // 2."""
    document = yaml.safe_load((ROOT / "bench" / "resnet50.yaml").read_text())
    if same:
        for layer in document["layers"]:
            kernel = layer.get("kernel_size", layer.get("pool_size"))
            if isinstance(kernel, int) and kernel > 1 and layer.get("padding") == kernel // 2:
                layer["padding"] = "same"
        document["name"] = "resnet50_same"
    return opened(document)
