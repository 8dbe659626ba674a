"""Benchmarks for the emitters (issue 3).

1. Forward pass of the emitted torch model vs a hand-written equivalent (goal: within 5 %).
   Models: the material's PyTorch CNN (119,530 params, batch 64, 28×28) and ResNet-50 (batch 8,
   224×224; hand-written the way torchvision writes it). Method: both models get the same weights,
   `torch.inference_mode()`, 3 warm-up passes, then interleaved timing (A, B, A, B, …) of N passes
   each, so drift in machine load hits both equally; median per pass and the ratio of medians.
2. Building both models for the ResNet-50 spec (resolve + emit source + compile + instantiate) vs
   the time the frameworks spend importing (measured in fresh processes).

Usage: python bench/bench_build.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _hand_written_pytorch_cnn():
    from torch import nn

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, 1, 1)
            self.pool1 = nn.MaxPool2d(2, 2)
            self.drop1 = nn.Dropout2d(0.5)
            self.conv2 = nn.Conv2d(32, 64, 3, 1, 1)
            self.pool2 = nn.MaxPool2d(2, 2)
            self.drop2 = nn.Dropout2d(0.5)
            self.fc1 = nn.Linear(3136, 32)
            self.fc2 = nn.Linear(32, 10)

        def forward(self, x):
            x = self.drop1(self.pool1(self.conv1(x).relu()))
            x = self.drop2(self.pool2(self.conv2(x).relu()))
            return self.fc2(self.fc1(x.flatten(1)).relu())

    return CNN()


def _hand_written_resnet50():
    from torch import nn

    class Bottleneck(nn.Module):
        def __init__(self, cin, width, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(width * 4)
            self.relu = nn.ReLU()
            self.down = None
            if stride != 1 or cin != width * 4:
                self.down = nn.Sequential(nn.Conv2d(cin, width * 4, 1, stride, bias=False), nn.BatchNorm2d(width * 4))

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu(out + (x if self.down is None else self.down(x)))

    class ResNet50(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
            blocks, cin = [], 64
            for count, width, stride in [(3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)]:
                for i in range(count):
                    blocks.append(Bottleneck(cin, width, stride if i == 0 else 1))
                    cin = width * 4
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(2048, 1000)

        def forward(self, x):
            return self.fc(self.blocks(self.stem(x)).mean((2, 3)))

    return ResNet50()


def _interleaved(fn_a, fn_b, runs: int) -> tuple[float, float]:
    for _ in range(3):
        fn_a()
        fn_b()
    a_times, b_times = [], []
    for _ in range(runs):
        start = time.perf_counter()
        fn_a()
        a_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        fn_b()
        b_times.append(time.perf_counter() - start)
    return statistics.median(a_times), statistics.median(b_times)


def forward_overhead(runs: int) -> None:
    import torch

    import cnnspec
    from cnnspec.weights.transfer import randomize

    torch.set_num_threads(2)
    cases = [
        ("pytorch_cnn (batch 64)", ROOT / "examples" / "pytorch_cnn.yaml", _hand_written_pytorch_cnn, (64, 1, 28, 28), runs * 4),
        ("resnet50 (batch 8)", ROOT / "bench" / "resnet50.yaml", _hand_written_resnet50, (8, 3, 224, 224), runs),
    ]
    print("forward pass: emitted torch model vs hand-written (same weights, inference_mode)")
    print(f"{'model':26s} {'emitted ms':>11s} {'hand ms':>9s} {'ratio':>7s}")
    for label, spec, hand_factory, shape, n in cases:
        emitted = cnnspec.build(spec, "torch").eval()
        randomize(emitted, seed=0)
        hand = hand_factory().eval()
        hand_params = list(hand.state_dict().values())
        emitted_params = list(emitted.state_dict().values())
        assert len(hand_params) == len(emitted_params), (len(hand_params), len(emitted_params))
        with torch.no_grad():
            for h, e in zip(hand_params, emitted_params):
                h.copy_(e.reshape(h.shape))
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            diff = (emitted(x) - hand(x)).abs().max().item()
            a, b = _interleaved(lambda: emitted(x), lambda: hand(x), n)
        print(f"{label:26s} {a * 1e3:11.2f} {b * 1e3:9.2f} {a / b:7.3f}   (max |diff| {diff:.1e})")


def build_time(runs: int) -> None:
    python = sys.executable

    def fresh(code: str) -> float:
        times = []
        for _ in range(max(3, runs // 3)):
            out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                                 env={"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
            times.append(float(out.stdout.strip().splitlines()[-1]))
        return statistics.median(times)

    timer = "import time; t = time.perf_counter(); {body}; print(time.perf_counter() - t)"
    import_torch = fresh(timer.format(body="import torch"))
    import_keras = fresh(timer.format(body="import keras, tensorflow"))
    pre = "import torch, keras, tensorflow, cnnspec; p = cnnspec.resolve('bench/resnet50.yaml'); "
    emit = fresh(pre + timer.format(body="cnnspec.emit_source(p, 'torch'); cnnspec.emit_source(p, 'keras')"))
    build_torch = fresh(pre + timer.format(body="cnnspec.build(p, 'torch')"))
    build_keras = fresh(pre + timer.format(body="cnnspec.build(p, 'keras')"))
    resolve = fresh("import cnnspec; " + timer.format(body="cnnspec.resolve('bench/resnet50.yaml')"))
    print("\nResNet-50 spec (174 layers): build vs framework import (fresh processes, medians)")
    rows = [
        ("import torch", import_torch), ("import keras + tensorflow", import_keras),
        ("cnnspec: load + resolve", resolve), ("cnnspec: emit both sources", emit),
        ("cnnspec.build torch (emit+compile+init)", build_torch), ("cnnspec.build keras (emit+compile+init)", build_keras),
    ]
    for label, seconds in rows:
        print(f"{label:42s} {seconds:7.3f} s")
    print(f"{'emit both / framework imports':42s} {emit / (import_torch + import_keras):7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    forward_overhead(args.runs)
    build_time(args.runs)


if __name__ == "__main__":
    main()
