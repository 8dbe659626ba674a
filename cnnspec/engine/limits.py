"""Resource limits, checked on the plan before any framework allocates a tensor.

A spec is a few lines of text, but ``dense: {units: 1000000}`` after a large
flatten asks for terabytes.  :func:`check_limits` compares the plan's parameter
count and activation memory with limits (by default derived from this machine's
RAM) and refuses with the numbers, located at the layer that contributes most.
"""

from __future__ import annotations

import os
import re

from cnnspec.errors import CnnspecError, Problem, SpecError

BYTES_PER_FLOAT32 = 4
DEFAULT_MEMORY_FRACTION = 0.25
# Above this, int32-indexed kernels and file formats (ONNX protobuf: 2 GiB) start to break.
DEFAULT_MAX_PARAMS = 2**31 - 1
FALLBACK_MEMORY_BYTES = 4 * 2**30  # when the machine's RAM cannot be read

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


class ResourceLimitError(SpecError):
    """A spec would need more parameters or memory than allowed (exit code 2).

    A :class:`~cnnspec.errors.SpecError`, so the CLI prints it as a located problem.
    """


def parse_size(text: str | int) -> int:
    """Parse a memory size such as ``"4GiB"``, ``"512 MB"``, ``"1.5g"`` or ``1024`` into bytes.

    Decimal units (kB, MB, GB, TB; also k, m, g, t) are powers of 1000; binary units
    (KiB, MiB, GiB, TiB) powers of 1024.

    Raises:
        CnnspecError: the text is not a size (message says what is accepted).
    """
    if isinstance(text, bool):
        raise CnnspecError(f"not a size: {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise CnnspecError(f"a size cannot be negative: {text}")
        return text
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise CnnspecError(
            f"not a size: {text!r}; write e.g. 4GiB, 512MiB, 2GB or a number of bytes"
        )
    return int(float(match.group(1)) * _UNITS[unit])


def format_bytes(count: int | float) -> str:
    """``4.6 GiB``-style text for a byte count."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} PiB"  # pragma: no cover


def machine_memory_bytes() -> int | None:
    """Total RAM of this machine (``/proc/meminfo``, else ``os.sysconf``), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def default_max_memory() -> int:
    """A quarter of this machine's RAM (4 GiB if that cannot be read)."""
    total = machine_memory_bytes()
    return int(total * DEFAULT_MEMORY_FRACTION) if total else FALLBACK_MEMORY_BYTES


def memory_needed(plan, batch: int = 1) -> tuple[int, int]:
    """(parameter bytes, activation bytes) of a plan as float32, for one batch of ``batch`` samples."""
    return plan.total_params * BYTES_PER_FLOAT32, plan.activation_elements(
        batch
    ) * BYTES_PER_FLOAT32


def _largest(plan, key) -> tuple:
    """The path of the layer with the largest ``key(layer)`` (where the refusal points)."""
    if not plan.layers:
        return ()
    layer = max(plan.layers, key=key)
    return ("layers", layer.index)


def check_limits(
    plan, *, max_params: int | None = None, max_memory: int | str | None = None, batch: int = 1
) -> None:
    """Refuse a plan that needs too many parameters or too much memory, before anything is allocated.

    Args:
        plan: a resolved :class:`~cnnspec.engine.plan.Plan`.
        max_params: the largest parameter count allowed (default ``2**31 - 1``).
        max_memory: bytes (or a size text such as ``"4GiB"``) allowed for the float32 parameters plus
            the activations of one batch (default: a quarter of this machine's RAM).
        batch: the batch size the activations are counted for.

    Raises:
        ResourceLimitError: with the counts, the bytes and the limit, located at the layer with the
            most parameters (or the largest output).
    """
    limit_params = DEFAULT_MAX_PARAMS if max_params is None else int(max_params)
    limit_memory = default_max_memory() if max_memory is None else parse_size(max_memory)
    source = getattr(plan.spec, "_source", None)
    file = source.file if source else None
    locate = source.locate if source else None
    params = plan.total_params
    param_bytes, activation_bytes = memory_needed(plan, batch)
    problems: list[Problem] = []
    if params > limit_params:
        problems.append(
            Problem(
                f"the model needs {params:,} parameters ({format_bytes(param_bytes)} as float32) > limit {limit_params:,}",
                _largest(plan, lambda layer: layer.total_params),
                "this layer has the most parameters; raise the limit with --max-params if this is intended",
            )
        )
    total_bytes = param_bytes + activation_bytes
    if total_bytes > limit_memory:
        problems.append(
            Problem(
                f"the model needs {format_bytes(total_bytes)} ({params:,} parameters = {format_bytes(param_bytes)} as float32, "
                f"plus {format_bytes(activation_bytes)} of activations for batch {batch}) > limit {format_bytes(limit_memory)}",
                _largest(
                    plan, lambda layer: max(layer.total_params, _elements(layer.output_shape))
                ),
                "the largest layer is shown; raise the limit with --max-memory (e.g. --max-memory 16GiB) if this is intended",
            )
        )
    if problems:
        raise ResourceLimitError(SpecError(problems).with_source(file, locate).problems)


def _elements(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


__all__ = [
    "ResourceLimitError",
    "check_limits",
    "parse_size",
    "format_bytes",
    "machine_memory_bytes",
    "default_max_memory",
]
