"""Resource limits are checked on the plan, with the numbers, before any framework allocates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import cnnspec
from cnnspec.engine import limits as safety
from cnnspec.errors import CnnspecError, SpecError
from cnnspec.engine.limits import ResourceLimitError, check_limits, parse_size

ROOT = Path(__file__).resolve().parent.parent

# flatten gives 3*1024*1024 = 3,145,728 features; dense 1000 units -> 3,145,729,000 parameters.
GIANT_DENSE = """cnnspec: 1
name: giant
input: {channels: 3, size: [1024, 1024]}
layers:
  - {type: flatten}
  - {name: fc, type: dense, units: 1000}
"""


def _plan(text):
    return cnnspec.resolve(cnnspec.load_spec(text))


def test_giant_dense_is_refused_with_the_numbers(tmp_path):
    spec = tmp_path / "giant.yaml"
    spec.write_text(GIANT_DENSE)
    plan = cnnspec.resolve(cnnspec.load_spec(spec))
    features = 3 * 1024 * 1024
    expected_params = features * 1000 + 1000  # weights + bias, counted by hand
    assert plan.total_params == expected_params
    with pytest.raises(ResourceLimitError) as caught:
        check_limits(plan, max_params=2**31 - 1, max_memory="1TiB")
    text = caught.value.render()
    assert text == (
        f"{spec}:6:5: layers[1]: the model needs 3,145,729,000 parameters (11.7 GiB as float32) > limit 2,147,483,647\n"
        "    hint: this layer has the most parameters; raise the limit with --max-params if this is intended"
    )
    assert expected_params * 4 / 2**30 == pytest.approx(11.72, abs=0.01)


def test_memory_limit_counts_parameters_and_activations():
    plan = _plan(GIANT_DENSE)
    with pytest.raises(ResourceLimitError) as caught:
        check_limits(plan, max_params=10**12, max_memory="4GiB")
    message = caught.value.problems[0].message
    assert "3,145,729,000 parameters = 11.7 GiB as float32" in message
    assert message.endswith("> limit 4.0 GiB")
    # activations: input 3*1024*1024 + flatten 3*1024*1024 + dense 1000 elements, 4 bytes each
    assert f"plus {safety.format_bytes((2 * 3 * 1024 * 1024 + 1000) * 4)} of activations for batch 1" in message


def test_batch_scales_activation_memory():
    plan = _plan("cnnspec: 1\ninput: {channels: 64, size: [512, 512]}\nlayers:\n  - {type: relu}\n")
    per_sample = 2 * 64 * 512 * 512 * 4  # input and relu output, float32 = 128 MiB
    check_limits(plan, max_memory=per_sample)  # exactly fits
    with pytest.raises(ResourceLimitError, match="for batch 8"):
        check_limits(plan, max_memory=per_sample * 7, batch=8)


def test_small_model_passes_default_limits():
    check_limits(cnnspec.resolve(ROOT / "examples" / "mnist_convnet.yaml"))


def test_resource_limit_error_is_a_spec_error_with_exit_code_2():
    assert issubclass(ResourceLimitError, SpecError) and issubclass(ResourceLimitError, CnnspecError)
    assert ResourceLimitError.exit_code == 2


@pytest.mark.parametrize(
    "text, expected",
    [("4GiB", 4 * 2**30), ("512 MiB", 512 * 2**20), ("2GB", 2 * 10**9), ("1.5g", 1_500_000_000),
     ("1024", 1024), ("10kB", 10_000), ("3 KiB", 3072), (2048, 2048), ("1TiB", 2**40)],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "4 GiBs", "-1GB", "1e9", "GiB", True])
def test_parse_size_rejects_nonsense(text):
    with pytest.raises(CnnspecError, match="not a size"):
        parse_size(text)


def test_machine_memory_matches_proc_meminfo():
    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        pytest.skip("no /proc/meminfo on this platform")
    kib = next(int(line.split()[1]) for line in meminfo.read_text().splitlines() if line.startswith("MemTotal:"))
    assert safety.machine_memory_bytes() == kib * 1024
    assert safety.default_max_memory() == int(kib * 1024 * 0.25)


def test_validate_and_resolve_import_no_framework(tmp_path):
    """load_spec + resolve + check_limits of a giant model neither imports nor allocates through a framework."""
    spec = tmp_path / "giant.yaml"
    spec.write_text(GIANT_DENSE)
    code = f"""
import json, sys
import cnnspec
from cnnspec.engine.limits import check_limits, ResourceLimitError
plan = cnnspec.resolve(cnnspec.load_spec({str(spec)!r}))
try:
    check_limits(plan)
    refused = False
except ResourceLimitError:
    refused = True
heavy = [m for m in ("torch", "tensorflow", "keras", "onnx", "onnxruntime", "jax") if m in sys.modules]
print(json.dumps({{"refused": refused, "heavy": heavy, "params": plan.total_params}}))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {"refused": True, "heavy": [], "params": 3_145_729_000}


def test_cli_build_refuses_before_importing_a_framework(tmp_path):
    spec = tmp_path / "giant.yaml"
    spec.write_text(GIANT_DENSE)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cnnspec", "build", str(spec), "--target", "torch", "--max-memory", "1GiB"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "> limit 1.0 GiB" in result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"torch", "tensorflow", "keras"}
