"""The repository's promises about installing: the lock, the README's commands and CI.

A fresh clone must get exactly the tested set of packages: both README commands install from
``requirements.lock``, which pins every package (transitive ones included) and was generated
from ``pyproject.toml``; ``.ci/run`` runs the README's test command verbatim.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
LOCK = ROOT / "requirements.lock"


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "--")):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        assert match, f"requirements.lock: not an exact pin: {line!r}"
        pins[_normalized(match.group(1))] = match.group(2)
    return pins


def _shell_blocks_after(heading: str) -> list[str]:
    section = README[README.index(heading):]
    return re.findall(r"```sh\n(.*?)\n```", section, flags=re.DOTALL)


def _readme_commands() -> tuple[str, str]:
    """The main job's command and the test command (the first two sh blocks of 'Two commands')."""
    main_job, tests = _shell_blocks_after("## Two commands")[:2]
    return main_job.strip(), tests.strip()


def test_both_readme_commands_install_from_the_lock():
    for command in _readme_commands():
        assert "pip install -q -r requirements.lock -e ." in command, command
        assert "constraints.txt" not in command  # the lock already holds the CPU pins


def test_ci_runs_the_readme_test_command_verbatim():
    _, tests = _readme_commands()
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert tests in lines
    assert lines[-1] == tests, "the test command is the last thing CI runs (its exit code is CI's)"


def test_ci_installs_chromium_without_failing_when_apt_is_missing():
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "apt-get install -y" in script and "chromium" in script
    assert "|| echo" in script  # a failed apt-get does not stop CI (set -e)


def test_the_lock_pins_every_package_exactly_with_the_cpu_builds():
    pins = _locked()
    assert pins["torch"].endswith("+cpu")
    assert "tensorflow-cpu" in pins and "tensorflow" not in pins
    cuda = sorted(name for name in pins if name.startswith(("nvidia-", "triton", "cuda-")))
    assert not cuda, f"CUDA packages in the lock: {cuda}"
    for needed in ("playwright", "safetensors", "ruff", "mypy", "pyyaml", "pydantic", "onnxruntime"):
        assert needed in pins, needed


def test_every_declared_dependency_is_locked():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    pins = _locked()
    for requirement in declared:
        name = _normalized(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))
        if name != "cnnspec":  # "cnnspec[torch,...]": the project's own extras
            assert name in pins, f"{requirement} is declared in pyproject.toml but not in requirements.lock"


def test_extras_hold_what_the_tools_need():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    names = {extra: {_normalized(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in reqs} for extra, reqs in extras.items()}
    assert "safetensors" in names["torch"]
    assert "playwright" in names["test"]
    assert {"ruff", "mypy"} <= names["dev"]


def test_the_refresh_command_in_the_readme_is_the_one_that_made_the_lock():
    header = LOCK.read_text(encoding="utf-8").splitlines()[:3]
    generated_by = header[1].lstrip("#").strip()
    assert generated_by.startswith("uv pip compile ")
    blocks = [block.strip() for block in _shell_blocks_after("## The lock")]
    assert any(block.endswith(generated_by) for block in blocks), generated_by


def test_the_running_environment_is_the_locked_set():
    """Tests run against exactly the locked versions (a fresh venv from the README has them)."""
    different = []
    for name, version in _locked().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            different.append(f"{name}=={version} is not installed")
            continue
        if installed != version:
            different.append(f"{name}: locked {version}, installed {installed}")
    if different:
        pytest.fail("the environment differs from requirements.lock:\n  " + "\n  ".join(different))
