"""What the command line writes, and how (issue 8, section 4).

* One rule for every writer: missing parent folders are created (build -o, --save-weights,
  schema -o, verify --json / --junit-xml / --keep-onnx).
* `--weights-from` without `--save-weights` is refused (the converted weights would be lost).
* Weight files as users have them: checkpoints and wrapper prefixes are unwrapped, with a note;
  weights that do not fit give a short summary, not torch's dump of every key.
* `build --target torch` writing source imports no framework.
* verify: one JSON shape, reports replaced on a rerun, `--quiet`, `--junit-xml`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "pytorch_cnn_bn.yaml"
SMALL = ROOT / "examples" / "exercises" / "conv_pool_28.yaml"
HEAVY = ("torch", "tensorflow", "keras", "numpy", "onnx", "onnxruntime")


def run(*args, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "cnnspec", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env, check=False)


# --------------------------------------------------------------------------------------
# Missing parent folders (no framework needed)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["torch", "keras"])
def test_build_output_creates_missing_folders(tmp_path, target):
    out = tmp_path / "new" / "deeper" / "model.py"
    result = run("build", SPEC, "--target", target, "-o", out)
    assert result.returncode == 0, result.stderr
    assert "class PytorchCnnBn" in out.read_text() or "def build_pytorch_cnn_bn" in out.read_text()


def test_schema_output_creates_missing_folders(tmp_path):
    out = tmp_path / "new" / "schema.json"
    result = run("schema", "-o", out)
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["title"]


def test_a_file_in_the_way_of_a_folder_is_a_clear_error(tmp_path):
    (tmp_path / "blocker").write_text("a file, not a folder\n")
    result = run("build", SPEC, "--target", "torch", "-o", tmp_path / "blocker" / "model.py")
    assert result.returncode == 2
    assert "cannot create the folder" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "blocker").read_text() == "a file, not a folder\n"


def test_atomic_write_creates_parents_and_leaves_no_temporary_file(tmp_path):
    from cnnspec.atomic import atomic_write

    target = tmp_path / "a" / "b" / "c.txt"
    atomic_write(target, "content")
    assert target.read_text() == "content"
    assert os.listdir(target.parent) == ["c.txt"]


def test_build_torch_source_imports_no_framework(tmp_path):
    """Writing source needs no framework (it used to import torch for a name check)."""
    out = tmp_path / "model.py"
    code = (
        "import sys\n"
        "from cnnspec.cli.main import main\n"
        f"code = main(['build', {str(SPEC)!r}, '--target', 'torch', '-o', {str(out)!r}])\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "class PytorchCnnBn(nn.Module)" in out.read_text()


def test_reserved_private_module_names_still_refused_without_torch():
    """The name check that needed torch still refuses a layer that would shadow nn.Module internals."""
    import cnnspec
    from cnnspec.errors import CnnspecError

    spec = {"cnnspec": 1, "name": "m", "input": {"channels": 1, "size": [8, 8]},
            "layers": [{"type": "conv2d", "name": "_apply", "filters": 2, "kernel_size": 3}]}
    with pytest.raises(CnnspecError, match="_apply"):
        cnnspec.emit_source(spec, "torch")


def test_static_nn_module_member_list_covers_the_installed_torch():
    nn = pytest.importorskip("torch.nn")
    from cnnspec.targets.torch.emit import _module_member_names

    members = {name for name in set(dir(nn.Module)) | set(vars(nn.Module())) if not name.startswith("__")}
    assert members <= _module_member_names(), sorted(members - _module_member_names())


# --------------------------------------------------------------------------------------
# --weights-from / --save-weights (frameworks)
# --------------------------------------------------------------------------------------


def test_weights_from_without_save_weights_is_refused(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"not read: the usage error comes first")
    result = run("build", SPEC, "--target", "keras", "--weights-from", weights)
    assert result.returncode == 2
    assert "--weights-from needs --save-weights" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def _trained_torch_state(seed: int = 3) -> tuple:
    torch = pytest.importorskip("torch")
    pytest.importorskip("keras")
    import cnnspec
    from cnnspec.weights.transfer import randomize

    model = cnnspec.build(SPEC, "torch")
    randomize(model, seed=seed)
    return torch, model, model.state_dict()


@pytest.mark.parametrize(
    ("wrapping", "expected_notes"),
    [
        (lambda s: {"state_dict": {f"module.{k}": v for k, v in s.items()}, "epoch": 7},
         ["is a checkpoint; using its 'state_dict' entry (ignoring 1 other entry)", "removed the prefix 'module.'"]),
        (lambda s: {"model": {f"model.{k}": v for k, v in s.items()}},
         ["is a checkpoint; using its 'model' entry", "removed the prefix 'model.'"]),
    ],
    ids=["lightning-style state_dict + module.", "model entry + model."],
)
def test_checkpoints_and_prefixes_are_unwrapped_with_a_note(tmp_path, wrapping, expected_notes):
    torch, _, state = _trained_torch_state()
    checkpoint = tmp_path / "checkpoint.ckpt"
    torch.save(wrapping(state), checkpoint)
    out = tmp_path / "weights" / "converted.pt"  # its folder does not exist yet
    result = run("build", SPEC, "--target", "torch", "-o", tmp_path / "m.py",
                 "--weights-from", checkpoint, "--save-weights", out)
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("cnnspec: note:")]
    assert len(notes) == len(expected_notes)
    for note, expected in zip(notes, expected_notes):
        assert expected in note
    converted = torch.load(out, weights_only=True)
    assert set(converted) == set(state)
    for key, value in state.items():
        assert torch.equal(converted[key], value), key


def test_plain_state_dict_gets_no_note(tmp_path):
    torch, _, state = _trained_torch_state()
    plain = tmp_path / "plain.pt"
    torch.save(state, plain)
    result = run("build", SPEC, "--target", "keras", "--weights-from", plain, "--save-weights",
                 tmp_path / "new" / "k.weights.h5")
    assert result.returncode == 0, result.stderr
    assert "note:" not in result.stderr
    assert (tmp_path / "new" / "k.weights.h5").is_file()


def test_weights_that_do_not_fit_give_a_short_summary(tmp_path):
    torch, _, state = _trained_torch_state()
    broken = dict(state)
    del broken["conv1.weight"]
    broken["extra.weight"] = torch.zeros(3)
    broken["fc2.weight"] = torch.zeros(7, 5)
    path = tmp_path / "broken.pt"
    torch.save(broken, path)
    result = run("build", SPEC, "--target", "keras", "--weights-from", path, "--save-weights", tmp_path / "k.weights.h5")
    assert result.returncode == 2
    message = result.stderr.strip()
    assert "Missing key(s)" not in message and "Traceback" not in message
    assert "1 of the model's tensors missing: conv1.weight" in message
    assert "1 not in the model: extra.weight" in message
    assert "fc2.weight (file (7, 5), model (10, 32))" in message
    assert len(message) < 600, message
    assert not (tmp_path / "k.weights.h5").exists()


def test_unwrap_leaves_a_prefix_that_the_model_really_has():
    """'model.' is stripped only when that makes the keys the model's (here they already are)."""
    torch = pytest.importorskip("torch")
    from cnnspec.weights.files import unwrap_state_dict

    state = {"model.weight": torch.zeros(1), "model.bias": torch.zeros(1)}
    unwrapped, notes = unwrap_state_dict(state, {"model.weight", "model.bias"})
    assert unwrapped is state and notes == []


def test_safetensors_round_trip(tmp_path):
    pytest.importorskip("safetensors")
    torch, trained, state = _trained_torch_state(seed=5)
    import cnnspec
    from cnnspec.weights.files import load_weights_file, save_weights_file

    path = save_weights_file(trained, tmp_path / "w" / "model.safetensors")
    fresh = cnnspec.build(SPEC, "torch")
    assert load_weights_file(fresh, path) == []
    for key, value in state.items():
        assert torch.equal(fresh.state_dict()[key], value), key


# --------------------------------------------------------------------------------------
# verify: usage errors before any work (no framework needed)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--json", "--junit-xml"])
def test_a_report_path_that_is_a_spec_is_refused(tmp_path, option):
    spec = tmp_path / "model.yaml"
    spec.write_text(SMALL.read_text())
    result = run("verify", spec, option, spec, timeout=120)
    assert result.returncode == 2
    assert "is one of the specs being verified" in result.stderr
    assert spec.read_text() == SMALL.read_text()


def test_a_report_path_that_is_a_folder_is_refused(tmp_path):
    result = run("verify", SMALL, "--json", tmp_path, timeout=120)
    assert result.returncode == 2 and "is a folder" in result.stderr


def test_verify_help_documents_exit_codes_reports_and_jobs():
    result = run("verify", "--help", timeout=60)
    text = " ".join(result.stdout.split())
    assert "0 every spec's models agree, 1 at least one mismatch, 2 bad input or usage" in text
    assert "a rerun replaces them" in text
    assert "--junit-xml" in text and "--quiet" in text
    assert "-j" in text and "bench/README.md" in text


# --------------------------------------------------------------------------------------
# verify: outputs (frameworks)
# --------------------------------------------------------------------------------------

# Element and attribute names of the JUnit XML schema (Jenkins' junit-10.xsd, which CI systems read).
JUNIT_ATTRIBUTES = {
    "testsuites": {"name", "time", "tests", "failures", "disabled", "errors"},
    "testsuite": {"name", "tests", "failures", "errors", "group", "time", "disabled", "skipped", "timestamp",
                  "hostname", "id", "package", "file", "log", "url", "version"},
    "testcase": {"name", "assertions", "time", "classname", "status"},
    "failure": {"message", "type"},
    "error": {"message", "type"},
    "skipped": {"message"},
    "system-out": set(),
    "system-err": set(),
    "properties": set(),
    "property": {"name", "value"},
}
JUNIT_CHILDREN = {
    "testsuites": {"testsuite"},
    "testsuite": {"properties", "testcase", "system-out", "system-err"},
    "testcase": {"skipped", "error", "failure", "system-out", "system-err"},
    "properties": {"property"},
}


def _check_junit_structure(root: ET.Element) -> None:
    def walk(element: ET.Element) -> None:
        assert element.tag in JUNIT_ATTRIBUTES, element.tag
        unknown = set(element.attrib) - JUNIT_ATTRIBUTES[element.tag]
        assert not unknown, (element.tag, unknown)
        for child in element:
            assert child.tag in JUNIT_CHILDREN.get(element.tag, set()), (element.tag, child.tag)
            walk(child)

    assert root.tag == "testsuites"
    walk(root)
    for suite in root:
        cases = suite.findall("testcase")
        assert int(suite.get("tests")) == len(cases)
        assert int(suite.get("failures")) == sum(c.find("failure") is not None for c in cases)
        assert int(suite.get("errors")) == sum(c.find("error") is not None for c in cases)
        for case in cases:
            assert case.get("name") and case.get("classname") and float(case.get("time")) >= 0


def test_junit_document_for_every_kind_of_outcome():
    """The writer on its own: ok, mismatch and invalid outcomes (no verification run needed)."""
    from cnnspec.cli.verify import Outcome, junit_xml

    mismatch = {"ok": False, "spec": "m", "atol": 1e-4, "rtol": 1e-4, "problems": ["p"],
                "divergence": {"name": "stem", "type": "conv2d", "max_abs_diff": 3.0, "max_rel_diff": 0.5, "hint": ""}}
    outcomes = [
        Outcome("ok.yaml", 0, report={"ok": True, "spec": "ok"}, summary="OK        ok", seconds=1.5),
        Outcome("bad_port.yaml", 1, report=mismatch, text="the table", summary="MISMATCH  m", seconds=2.0),
        Outcome("broken.yaml", 2, error="broken.yaml:3:4: unknown field 'x'\n    hint: h", summary="INVALID   broken.yaml"),
    ]
    root = ET.fromstring(junit_xml(outcomes))
    _check_junit_structure(root)
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    failure = suite.findall("testcase")[1].find("failure")
    assert failure.get("message") == "first divergent layer 'stem' (conv2d): max abs diff 3, max rel diff 0.5, atol 0.0001, rtol 0.0001"
    error = suite.findall("testcase")[2].find("error")
    assert error.get("message") == "broken.yaml:3:4: unknown field 'x'" and error.get("type") == "invalid_input"


@pytest.mark.onnx
def test_verify_outputs_quiet_new_folders_and_rerun_over_old_reports(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    json_path = tmp_path / "new" / "reports" / "verify.json"  # folders that do not exist yet
    junit_path = tmp_path / "junit.xml"
    junit_path.write_text("stale report of an earlier run\n")  # a rerun replaces it
    graphs = tmp_path / "graphs" / "kept"
    graphs.mkdir(parents=True)
    (graphs / "torch.onnx").write_text("stale\n")
    result = run("verify", SMALL, "--quiet", "--json", json_path, "--junit-xml", junit_path, "--keep-onnx", graphs)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("OK ") and "exercise_conv_pool_28" in lines[0]
    document = json.loads(json_path.read_text())
    assert document["ok"] is True and document["exit_code"] == 0
    assert [r["spec"] for r in document["reports"]] == ["exercise_conv_pool_28"]
    root = ET.fromstring(junit_path.read_text())
    _check_junit_structure(root)
    assert [c.get("name") for c in root.iter("testcase")] == [str(SMALL)]
    assert (graphs / "torch.onnx").stat().st_size > 100 and (graphs / "keras.onnx").is_file()


@pytest.mark.onnx
def test_mismatch_in_junit_and_json_names_the_first_divergent_layer(tmp_path, capsys, monkeypatch):
    """Negative control: keras's second conv is perturbed after the transfer; both reports say so."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    import cnnspec.weights.transfer as weights
    from cnnspec.cli import main as cli

    real_transfer = weights.transfer_weights

    def transfer_then_break_conv2(src, dst, spec):
        real_transfer(src, dst, spec)
        kernel = dst.get_layer("conv2d_2").kernel
        kernel.assign(kernel.numpy() * 1.01)

    monkeypatch.setattr(weights, "transfer_weights", transfer_then_break_conv2)
    json_path, junit_path = tmp_path / "r.json", tmp_path / "j" / "junit.xml"
    spec = str(ROOT / "examples" / "mnist_convnet.yaml")
    code = cli.main(["verify", spec, "--quiet", "--no-progress", "--json", str(json_path), "--junit-xml", str(junit_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert out.splitlines() == [line for line in out.splitlines() if line.startswith("MISMATCH")] and out.strip()
    report = json.loads(json_path.read_text())
    assert report["ok"] is False and report["exit_code"] == 1
    divergence = report["reports"][0]["divergence"]
    assert divergence["name"] == "conv2d_2"
    root = ET.fromstring(junit_path.read_text())
    _check_junit_structure(root)
    failure = root.find("testsuite/testcase/failure")
    assert failure.get("type") == "mismatch"
    assert failure.get("message").startswith(
        f"first divergent layer 'conv2d_2' (conv2d): max abs diff {divergence['max_abs_diff']:.3g}, "
        f"max rel diff {divergence['max_rel_diff']:.3g}"
    )
