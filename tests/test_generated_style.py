"""Generated modules read as hand-written: ruff finds nothing, the formatter changes nothing, and
framework defaults are not spelled out.

Every example spec (and fuzzed specs) is emitted for both targets and run through
``ruff check`` (pyflakes: unused imports, undefined names) and ``ruff format --check`` at line
length 100.  No framework is imported.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import cnnspec
import cnnspec.targets.build
from spec_strategies import valid_specs

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "examples").glob("*.yaml")) + [ROOT / "bench" / "resnet50.yaml"]
RUFF = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))


def _ruff(*args: str, directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [RUFF, *args, "--isolated", "--line-length", "100", str(directory)], capture_output=True, text=True
    )


def _write_sources(specs, directory: Path) -> None:
    for number, spec in enumerate(specs):
        for target in ("torch", "keras"):
            (directory / f"model_{number}_{target}.py").write_text(cnnspec.emit_source(spec, target), encoding="utf-8")


def _assert_clean(directory: Path) -> None:
    check = _ruff("check", "--select", "F", directory=directory)
    assert check.returncode == 0, check.stdout + check.stderr
    formatted = _ruff("format", "--check", "--diff", directory=directory)
    assert formatted.returncode == 0, formatted.stdout[-4000:] + formatted.stderr


@pytest.mark.skipif(not Path(RUFF).exists(), reason="ruff is not installed")
def test_every_example_is_ruff_clean(tmp_path):
    _write_sources(SPECS, tmp_path)
    _assert_clean(tmp_path)


@pytest.mark.skipif(not Path(RUFF).exists(), reason="ruff is not installed")
def test_fuzzed_specs_are_ruff_clean(tmp_path):
    specs: list[dict] = []

    @settings(derandomize=True, max_examples=60, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(spec=valid_specs(max_layers=6))
    def collect(spec):
        specs.append(spec)

    collect()
    _write_sources(specs, tmp_path)
    _assert_clean(tmp_path)


def test_a_ruff_failure_is_detected(tmp_path):
    """The check can fail: an unused import and a long unformatted line are found."""
    (tmp_path / "bad.py").write_text("import math\nx = [" + ", ".join(["1"] * 60) + "]\n")
    assert _ruff("check", "--select", "F", directory=tmp_path).returncode != 0
    assert _ruff("format", "--check", directory=tmp_path).returncode != 0


SPELLED_OUT_DEFAULTS = [
    "stride=(1, 1)", "padding=(0, 0)", "dilation=(1, 1)", "groups=1", "bias=True", "dilation_rate=(1, 1)",
    "use_bias=True", "kernel_size=(3, 3)", "ceil_mode=False", "keepdim=False", "axis=-1", "padding='valid'",
    'padding="valid"', "eps=1e-05", "momentum=0.1)",
]


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_framework_defaults_are_not_spelled_out(spec):
    for target in ("torch", "keras"):
        source = cnnspec.emit_source(spec, target)
        # The framework's own layers in the model body (helper classes take their arguments in full).
        start = source.index("class " + cnnspec.targets.build.class_name(cnnspec.resolve(spec).name) + "(") \
            if target == "torch" else source.index("\ndef build_")
        body = [line for line in source[start:].splitlines() if "nn." in line or "layers." in line]
        found = [text for text in SPELLED_OUT_DEFAULTS for line in body if re.search(re.escape(text) + r"(?![\d.])", line)]
        assert not found, f"{spec.name} {target}: {found}"


def test_keras_pads_with_same_where_same_is_exact():
    """Explicit padding 1 around a 3x3 window at stride 1 is Keras' own SAME: no ZeroPadding2D."""
    spec = {"cnnspec": 1, "input": {"channels": 3, "size": [8, 8]}, "layers": [
        {"type": "conv2d", "name": "c", "filters": 4, "kernel_size": 3, "padding": 1},
        {"type": "max_pool2d", "name": "p", "pool_size": 3, "stride": 1, "padding": 1},
        {"type": "conv2d", "name": "odd", "filters": 4, "kernel_size": 3, "stride": 2, "padding": 1}]}
    source = cnnspec.emit_source(spec, "keras")
    assert 'layers.Conv2D(4, 3, padding="same", name="c")' in source
    assert 'layers.MaxPooling2D(3, strides=1, padding="same", name="p")' in source
    # stride 2 on 8 cells: SAME pads (0, 1), the spec pads (1, 1): an explicit pad layer
    assert 'layers.ZeroPadding2D(1, name="odd_pad")' in source
