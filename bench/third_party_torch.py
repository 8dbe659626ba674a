"""Real PyTorch model zoos through the whole ``cnnspec convert --to keras``, proof included.

torchvision's classification models and a family-by-family sample of timm's CNNs, as their
authors publish them (``weights=None`` / ``pretrained=False``, each library's own initialisation,
seeded with ``torch.manual_seed(--seed)``), plus torchvision's models exported by ``torch.onnx``
(legacy exporter with a dynamic batch, and dynamo) and converted from the ``.onnx`` file.

torchvision from PyPI links CUDA libraries and does not import beside this project's CPU torch
(``operator torchvision::nms does not exist``), and timm imports torchvision.  Their model code is
plain Python, so this script builds a site directory (``--site``, made once): the torchvision
wheel's Python files (``pip download``, no install) with its two modules that load the compiled
extension replaced by stubs, and timm, Pillow, huggingface_hub and safetensors installed into
it (``pip install --target``).  Nothing is installed into the environment running cnnspec.

One fresh process per model: import, build, weights, then the per-layer proof against the
original through ONNX and onnxruntime.  Records the exit code, wall seconds, peak memory
(``ru_maxrss``), parameters, layers compared, the largest difference over all layers and at the
output, the report's notes (e.g. outputs below the tolerance), or the first line of the error.

    python bench/third_party_torch.py [--only torchvision:resnet18,timm:dla34] [--no-onnx]
        [--seed 0] [--site /tmp/cnnspec-third-party] [--json bench/third_party_torch.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

TORCHVISION_VERSION = "0.29.1"
TIMM_VERSION = "1.0.31"

TORCHVISION = (
    "alexnet convnext_tiny densenet121 efficientnet_b0 efficientnet_v2_s googlenet inception_v3 "
    "mnasnet0_5 mnasnet1_0 mobilenet_v2 mobilenet_v3_large mobilenet_v3_small regnet_x_400mf "
    "regnet_y_400mf resnet18 resnet50 resnext50_32x4d shufflenet_v2_x0_5 shufflenet_v2_x1_0 "
    "squeezenet1_0 squeezenet1_1 vgg11_bn wide_resnet50_2"
).split()
TORCHVISION_ONNX = (
    "convnext_tiny densenet121 efficientnet_b0 googlenet inception_v3 mnasnet1_0 "
    "mobilenet_v3_large regnet_y_400mf resnext50_32x4d shufflenet_v2_x1_0 squeezenet1_1"
).split()
# One or two small members of each timm CNN family.
TIMM = (
    "resnet50d resnext26ts seresnet18 ecaresnet26t res2net50_14w_8s dla34 dpn48b regnetx_002 "
    "regnety_002 rexnet_100 ghostnet_100 ghostnetv3_100 selecsls42b vovnet39a ese_vovnet19b_dw "
    "xception41 mixnet_s efficientnet_b0 tf_efficientnet_b0 efficientnetv2_rw_t mobilenetv3_large_100 "
    "tf_mobilenetv3_small_100 lcnet_050 hardcorenas_a repvgg_a0 mobileone_s0 convnext_atto "
    "cspdarknet53 darknet53 cs3darknet_s gernet_s inception_next_tiny hgnet_tiny fastvit_t8 "
    "repghostnet_050"
).split()
SIZES = {"inception_v3": 299}

SHIM_INIT = '''"""torchvision's pure-Python models without its compiled extension (see bench/third_party_torch.py)."""
import torch

_image_backend = "PIL"


def _is_tracing():
    return torch._C._get_tracing_state()
'''
SHIM_EXTENSION = '''def _has_ops():
    return False


def _assert_has_ops():
    raise RuntimeError("torchvision's compiled operators are not loaded")


def _load_library(name):
    return None
'''


def make_site(site: Path) -> None:
    """The site directory with torchvision's model code, timm and their pure-Python needs."""
    if (site / "torchvision" / "models").is_dir() and (site / "timm").is_dir():
        return
    site.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    with tempfile.TemporaryDirectory() as download:
        subprocess.run(
            [*pip, "download", f"torchvision=={TORCHVISION_VERSION}", "--no-deps", "-d", download],
            check=True,
        )
        (wheel,) = Path(download).glob("torchvision-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if member.startswith("torchvision/") and member.endswith(".py"):
                    archive.extract(member, site)
    (site / "torchvision" / "__init__.py").write_text(SHIM_INIT)
    (site / "torchvision" / "extension.py").write_text(SHIM_EXTENSION)
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), f"timm=={TIMM_VERSION}",
         "pillow", "huggingface_hub", "safetensors"],
        check=True,
    )


def run(command: list[str], site: Path) -> tuple[subprocess.CompletedProcess, float, int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, text=True, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        done = subprocess.CompletedProcess(command, process.returncode, stdout.read(), stderr.read())
    return done, time.perf_counter() - start, round(usage.ru_maxrss / 1024)


SEEDED = (
    "import sys, warnings; warnings.filterwarnings('ignore'); import torch; "
    "torch.manual_seed(int(sys.argv[1])); from cnnspec.cli.main import main; sys.exit(main(sys.argv[2:]))"
)
EXPORT = r'''
import sys, warnings
warnings.filterwarnings("ignore")
import torch, torchvision.models as models
torch.manual_seed(int(sys.argv[1]))
name, exporter, size, path = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
model = models.get_model(name).eval()
with torch.no_grad():
    torch.onnx.export(model, (torch.randn(1, 3, size, size),), path, dynamo=exporter == "dynamo",
                      opset_version=18, input_names=["input"],
                      dynamic_axes=None if exporter == "dynamo" else {"input": {0: "batch"}})
'''


def row_of(label: str, done, seconds: float, peak: int, out: Path, seed: int) -> dict:
    row: dict = {"model": label, "seed": seed, "exit": done.returncode, "seconds": round(seconds, 1), "peak_mb": peak}
    report = out / "report.json"
    if report.exists():
        data = json.loads(report.read_text())
        check = data.get("verification") or {}
        row.update(
            parameters=data.get("parameters"),
            layers=len(check.get("layers") or []),
            max_abs_diff=check.get("max_abs_diff"),
            output_max_abs_diff=check.get("output_max_abs_diff"),
            first_divergent_layer=check.get("first_divergent_layer"),
            notes=[note[:160] for note in check.get("notes") or []],
        )
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip() and "hf_api" not in line]
        row["error"] = next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "")[:300]
    return row


def convert_module(library: str, name: str, folder: Path, site: Path, seed: int) -> dict:
    size = SIZES.get(name, 224)
    out = folder / f"{library}_{name}"
    reference, kwargs = (
        (f"torchvision.models:{name}", "{}") if library == "torchvision" else ("timm:create_model", json.dumps({"model_name": name}))
    )
    command = [
        sys.executable, "-c", SEEDED, str(seed), "convert", reference, "--kwargs", kwargs,
        "--input-shape", f"3,{size},{size}", "--to", "keras", "-o", str(out), "--no-progress",
    ]
    done, seconds, peak = run(command, site)
    return row_of(f"{library}:{name}", done, seconds, peak, out, seed)


def convert_onnx(name: str, exporter: str, folder: Path, site: Path, seed: int) -> dict:
    size = SIZES.get(name, 224)
    path = folder / f"{name}_{exporter}.onnx"
    exported, _, _ = run([sys.executable, "-c", EXPORT, str(seed), name, exporter, str(size), str(path)], site)
    label = f"onnx-{exporter}:{name}"
    if exported.returncode != 0:
        return {"model": label, "seed": seed, "exit": None, "error": "export failed: " + exported.stderr.strip()[-300:]}
    out = folder / f"onnx_{exporter}_{name}"
    command = [sys.executable, "-m", "cnnspec", "convert", str(path), "--to", "keras", "-o", str(out), "--no-progress"]
    done, seconds, peak = run(command, site)
    return row_of(label, done, seconds, peak, out, seed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="comma-separated library:name (torchvision, timm, onnx-legacy, onnx-dynamo)")
    parser.add_argument("--no-onnx", action="store_true", help="leave out the torch.onnx exports")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--site", default=str(Path(tempfile.gettempdir()) / "cnnspec-third-party"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    site = Path(args.site)
    make_site(site)
    jobs = [("torchvision", n) for n in TORCHVISION] + [("timm", n) for n in TIMM]
    if not args.no_onnx:
        jobs += [(f"onnx-{e}", n) for e in ("legacy", "dynamo") for n in TORCHVISION_ONNX]
    if args.only:
        wanted = set(args.only.split(","))
        jobs = [job for job in jobs if ":".join(job) in wanted]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for library, name in jobs:
            if library.startswith("onnx-"):
                row = convert_onnx(name, library[5:], Path(folder), site, args.seed)
            else:
                row = convert_module(library, name, Path(folder), site, args.seed)
            rows.append(row)
            print(json.dumps(row), flush=True)
    passed = sum(row["exit"] == 0 for row in rows)
    print(f"{passed}/{len(rows)} converted and verified")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
