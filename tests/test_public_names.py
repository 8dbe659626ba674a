"""Importing any part of cnnspec never changes what its public names are.

Importing a submodule binds it as an attribute of its package: a submodule called
``cnnspec/verify.py`` turned ``cnnspec.verify`` from the function into the module as soon as
anything imported it (``TypeError: 'module' object is not callable``, depending on test order).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cnnspec

ROOT = Path(__file__).resolve().parent.parent

# Public functions announced for coming issues; no submodule may take these names either.
PLANNED_PUBLIC_NAMES = {"explain", "from_keras", "from_torch", "from_onnx", "convert", "name_map"}

# A fresh interpreter: snapshot every public name, import every submodule, compare.
_CHECK = textwrap.dedent(
    """
    import importlib, json, pkgutil, types
    import cnnspec

    FRAMEWORKS = {"torch", "tensorflow", "keras", "onnx", "onnxruntime", "tf2onnx", "onnxscript",
                  "numpy", "h5py", "rich", "safetensors", "playwright"}
    before = {name: getattr(cnnspec, name) for name in cnnspec.__all__}
    kinds = {name: type(value).__name__ for name, value in before.items()}
    imported, skipped = [], []
    for info in pkgutil.walk_packages(cnnspec.__path__, "cnnspec."):
        if info.name == "cnnspec.__main__":  # runs the command line when imported
            continue
        try:
            importlib.import_module(info.name)
        except ImportError as error:
            if (error.name or "").split(".")[0] not in FRAMEWORKS:
                raise
            skipped.append(f"{info.name} ({error.name} missing)")
            continue
        imported.append(info.name)
    changed = [
        f"{name}: was {kinds[name]}, now {type(getattr(cnnspec, name)).__name__}"
        for name in cnnspec.__all__ if getattr(cnnspec, name) is not before[name]
    ]
    modules = [name for name in cnnspec.__all__ if isinstance(getattr(cnnspec, name), types.ModuleType)]
    print(json.dumps({"imported": imported, "skipped": skipped, "changed": changed, "modules": modules,
                      "kinds": kinds}))
    """
)


def _run_check() -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _CHECK], capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_every_submodule_keeps_every_public_name():
    outcome = _run_check()
    assert outcome["changed"] == [], outcome["changed"]
    assert outcome["modules"] == []
    # Functions stay functions (the names the README documents as callables).
    for name in ("load_spec", "resolve", "build", "emit_source", "transfer_weights", "verify"):
        assert outcome["kinds"][name] == "function", (name, outcome["kinds"][name])
    # The walk really reached the deep modules (no silent empty walk).
    for module in ("cnnspec.verifier.run", "cnnspec.cli.verify", "cnnspec.load.loader", "cnnspec.weights.transfer"):
        assert module in outcome["imported"] or any(s.startswith(module) for s in outcome["skipped"])


def test_with_the_frameworks_installed_every_submodule_imports():
    import pytest

    pytest.importorskip("torch")
    pytest.importorskip("keras")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    outcome = _run_check()
    assert outcome["skipped"] == []


def test_verify_stays_callable_after_its_package_is_imported_in_this_process():
    import importlib
    import pkgutil

    verify = cnnspec.verify
    for info in pkgutil.iter_modules(cnnspec.__path__, "cnnspec."):
        if info.ispkg:
            importlib.import_module(info.name)
    assert cnnspec.verify is verify and callable(cnnspec.verify)


def test_no_submodule_of_cnnspec_is_named_like_a_public_name():
    import pkgutil

    public = set(cnnspec.__all__) | PLANNED_PUBLIC_NAMES
    children = {info.name for info in pkgutil.iter_modules(cnnspec.__path__)}
    assert children, "no submodules found"
    clashes = sorted(children & public)
    assert clashes == [], f"submodules named like public names: {clashes}"


def test_the_clash_check_catches_a_module_named_verify(tmp_path):
    """The negative control: a package with a submodule 'verify' loses its function on import."""
    package = tmp_path / "pkg_with_clash"
    package.mkdir()
    (package / "__init__.py").write_text("def verify():\n    return 'function'\n")
    (package / "verify.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    try:
        import importlib

        clashing = importlib.import_module("pkg_with_clash")
        assert callable(clashing.verify)
        importlib.import_module("pkg_with_clash.verify")
        assert not callable(clashing.verify)  # the rebinding this file guards against
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.startswith("pkg_with_clash")]:
            del sys.modules[name]
