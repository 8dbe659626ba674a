"""Atomic output: the target holds the old file or the new one, never a partial one, and no temp files remain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnspec.atomic import atomic_path, atomic_write
from cnnspec.errors import CnnspecError, OutputExistsError

ROOT = Path(__file__).resolve().parent.parent


def _leftovers(directory: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


def test_write_new_file_text_and_bytes(tmp_path):
    atomic_write(tmp_path / "a.txt", "héllo\n")
    atomic_write(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "a.txt").read_bytes() == "héllo\n".encode("utf-8")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert _leftovers(tmp_path, {"a.txt", "b.bin"}) == []


def test_refuses_existing_target_without_overwrite(tmp_path):
    target = tmp_path / "model.py"
    target.write_text("old")
    with pytest.raises(OutputExistsError) as caught:
        atomic_write(target, "new")
    assert isinstance(caught.value, CnnspecError) and caught.value.exit_code == 2
    assert "--force" in str(caught.value) and str(target) in str(caught.value)
    assert target.read_text() == "old"
    atomic_write(target, "new", overwrite=True)
    assert target.read_text() == "new"
    assert _leftovers(tmp_path, {"model.py"}) == []


def test_refuses_a_directory(tmp_path):
    with pytest.raises(OutputExistsError, match="is a directory"):
        atomic_write(tmp_path, "x", overwrite=True)


def test_new_file_gets_normal_permissions_and_keeps_existing_ones(tmp_path):
    fresh = tmp_path / "fresh.txt"
    atomic_write(fresh, "x")
    umask = os.umask(0o022)
    os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask
    script = tmp_path / "run.sh"
    script.write_text("old")
    script.chmod(0o755)
    atomic_write(script, "new", overwrite=True)
    assert script.stat().st_mode & 0o777 == 0o755


def test_exception_mid_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "weights.bin"
    target.write_bytes(b"old contents")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_path(target, overwrite=True) as temp:
            assert temp.parent == tmp_path
            temp.write_bytes(b"half of the new")
            raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"old contents"
    assert _leftovers(tmp_path, {"weights.bin"}) == []


def test_keyboard_interrupt_mid_write_leaves_no_file(tmp_path):
    target = tmp_path / "new.py"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as temp:
            temp.write_text("partial")
            raise KeyboardInterrupt
    assert not target.exists()
    assert _leftovers(tmp_path, set()) == []


CHILD = r"""
import sys, time
from cnnspec.atomic import atomic_path
target, chunks = sys.argv[1], int(sys.argv[2])
chunk = b"N" * 65536
with atomic_path(target, overwrite=True) as temp:
    with open(temp, "wb") as handle:
        for i in range(chunks):
            handle.write(chunk)
            handle.flush()
            if i == 0:
                print("started", flush=True)
            time.sleep(0.002)
print("done", flush=True)
"""


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
def test_sigint_during_a_slow_write_leaves_old_or_new_never_partial(tmp_path, delay):
    target = tmp_path / "big.bin"
    old = b"O" * 1000
    target.write_bytes(old)
    chunks = 100
    new = b"N" * 65536 * chunks
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(target), str(chunks)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout.readline().strip() == "started"
    time.sleep(delay)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    content = target.read_bytes()
    assert content in (old, new), f"partial file of {len(content)} bytes"
    if child.returncode != 0:
        assert "KeyboardInterrupt" in stderr
    assert _leftovers(tmp_path, {"big.bin"}) == []
