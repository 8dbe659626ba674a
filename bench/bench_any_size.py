"""Benchmark (issue 12): the forward pass of a torch model that works its padding out per input
against the same model with the padding fixed at the reference size.

Method: the spec is built twice from the same layers -- once with ``size: [224, 224]`` (static
padding: ``nn.ZeroPad2d`` / padding inside the conv, as before issue 12) and once with
``size: [null, null]`` (``SamePad`` helpers wherever 'same' padding with a stride depends on the
size, plus the ``check_input_shape`` call both have).  Both get the same weights (PyTorch's
default initialisation of the static one, copied; the outputs are compared: max |diff| printed,
must be 0) and run at the reference size under ``torch.inference_mode()``, 1 thread (the machine
is shared: two threads on a loaded box time the scheduler), denormals flushed to zero; 3 warm-up
passes each, then interleaved timing (static, runtime, static, runtime, ...) so that the machine's
noise hits both; medians per pass and their ratio from the same run.  Goal: runtime / static
<= 1.05.  The last row times the stem's padding module alone (20x the runs).

Models: ResNet-50 in TensorFlow's style (bench/resnet50.yaml with its 7×7, 3×3 and max-pool
padding 'same' instead of k // 2: five strided layers pad per input), torchvision's ResNet-50
itself (explicit padding: nothing is worked out per input, the difference is the input check
alone) and MobileNetV2 (five strided 'same' layers, far less compute per layer).

Usage: python bench/bench_any_size.py [--runs N] [--batch B] [--threads T]
       [--models resnet50_same resnet50 mobilenet_v2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from any_size_models import mobilenet_v2, resnet50  # noqa: E402

MODELS = {
    "resnet50_same": lambda: resnet50(same=True),
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
}


def _fixed(document: dict) -> dict:
    """The same spec with its input fixed at the reference size (the static emission)."""
    reference = document["input"]["reference_size"]
    return {
        **document,
        "input": {"channels": document["input"]["channels"], "size": list(reference)},
    }


def measure(name: str, runs: int, batch: int) -> dict:
    import torch

    import cnnspec

    document = MODELS[name]()
    static = cnnspec.build(_fixed(document), "torch")
    runtime = cnnspec.build(document, "torch")
    runtime.load_state_dict(static.state_dict())
    helpers = sum(type(m).__name__ == "SamePad" for m in runtime.modules())
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        diff = float((static(x) - runtime(x)).abs().max())
        for _ in range(3):
            static(x)
            runtime(x)
        times: dict[str, list[float]] = {"static": [], "runtime": []}
        for _ in range(runs):
            for label, model in (("static", static), ("runtime", runtime)):
                start = time.perf_counter()
                model(x)
                times[label].append(time.perf_counter() - start)
    medians = {label: statistics.median(values) * 1000 for label, values in times.items()}
    return dict(
        model=name,
        helpers=helpers,
        diff=diff,
        static_ms=medians["static"],
        runtime_ms=medians["runtime"],
        ratio=medians["runtime"] / medians["static"],
    )


def measure_pad(runs: int, batch: int) -> dict:
    """One padding module alone, on ResNet-50's stem input: SamePad against the static ZeroPad2d."""
    import torch

    import cnnspec

    document = MODELS["resnet50_same"]()
    static = cnnspec.build(_fixed(document), "torch").conv1_pad
    runtime = cnnspec.build(document, "torch").conv1_pad
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        diff = float((static(x) - runtime(x)).abs().max())
        times: dict[str, list[float]] = {"static": [], "runtime": []}
        for _ in range(runs * 20):
            for label, module in (("static", static), ("runtime", runtime)):
                start = time.perf_counter()
                module(x)
                times[label].append(time.perf_counter() - start)
    medians = {label: statistics.median(values) * 1000 for label, values in times.items()}
    return dict(
        model=f"conv1_pad alone ({type(static).__name__} vs {type(runtime).__name__})",
        helpers=1,
        diff=diff,
        static_ms=medians["static"],
        runtime_ms=medians["runtime"],
        ratio=medians["runtime"] / medians["static"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    # decaying activations of an untrained deep net become denormal numbers, which CPUs handle
    # up to 100x slower: flushed to zero, the timing is the network's, not the random weights'
    torch.set_flush_denormal(True)
    print("| model | SamePad helpers | max abs diff | static ms | runtime padding ms | ratio |")
    print("|---|---|---|---|---|---|")
    for name in [*args.models, "pad"]:
        if name == "pad":
            row = measure_pad(args.runs, args.batch)
        else:
            row = measure(name, args.runs, args.batch)
        print(
            f"| {row['model']}, batch {args.batch}, 3×224×224 | {row['helpers']} | {row['diff']:.1g} | "
            f"{row['static_ms']:.2f} | {row['runtime_ms']:.2f} | {row['ratio']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
