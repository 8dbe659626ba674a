"""Resampling arithmetic: adaptive pooling windows and resize interpolation.  No framework is imported.

These functions are the definition the spec publishes (``docs/semantics.md``, "Adaptive
pooling" and "Resize"); the generated helpers in ``cnnspec/targets/*/helpers.py`` compute
the same numbers with numpy, and the tests check both against PyTorch and TensorFlow.
"""

from __future__ import annotations

import math

RESIZE_MODES = ("nearest", "nearest_exact", "linear", "cubic")
TORCH_CUBIC_COEFFICIENT = -0.75  # PyTorch and ONNX's default Keys coefficient
TF_CUBIC_COEFFICIENT = -0.5  # TensorFlow's half-pixel bicubic (Keys 1981)


def adaptive_windows(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive pooling windows along one axis: ``[start, end)`` for each output cell.

    start = ⌊i·size / out⌋ and end = ⌈(i+1)·size / out⌉, so windows may overlap and differ in
    length when ``out`` does not divide ``size`` (10 → 7: (0,2), (1,3), (2,5), (4,6), ...).
    """
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def scaled_size(size: int, scale: float) -> int:
    """Output length of a resize by ``scale``: ⌊size·scale⌋ (PyTorch's rule)."""
    return math.floor(size * scale)


def _f32(value: float) -> float:
    """Round to float32, as the frameworks compute resize coordinates in float32."""
    import struct

    return struct.unpack("f", struct.pack("f", value))[0]


def resize_ratio(size: int, out: int, align_corners: bool) -> float:
    """Input cells per output cell: size/out, or (size-1)/(out-1) with align_corners."""
    if align_corners:
        return (size - 1) / (out - 1) if out > 1 else 0.0
    return size / out


def keys_cubic_weight(distance: float, coefficient: float) -> float:
    """Keys' cubic convolution kernel W(d) with coefficient ``a`` (PyTorch -0.75, TensorFlow -0.5)."""
    d = abs(distance)
    a = coefficient
    if d <= 1.0:
        return ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0
    if d < 2.0:
        return ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a
    return 0.0


def interpolation_taps(
    size: int,
    out: int,
    mode: str,
    align_corners: bool = False,
    cubic_coefficient: float = TORCH_CUBIC_COEFFICIENT,
    exclude_outside: bool = False,
) -> list[list[tuple[int, float]]]:
    """For each output cell along one axis, the input cells it reads and their weights.

    With r = :func:`resize_ratio`:

    * ``nearest``: index ⌊i·r⌋ (PyTorch's ``nearest``; ONNX asymmetric + floor).
    * ``nearest_exact``: index ⌊(i + ½)·r⌋ (PyTorch ``nearest-exact``, TensorFlow/Keras ``nearest``).
    * ``linear``: x = (i + ½)·r − ½ clamped at 0 (or i·r with align_corners); the two cells
      around x, weights 1 − t and t (t = x − ⌊x⌋).
    * ``cubic``: the same x, not clamped; the four cells ⌊x⌋−1 … ⌊x⌋+2 with Keys' weights W(x − j).
      Taps outside the input read the edge cell (PyTorch, ONNX ``exclude_outside=0``) or, with
      ``exclude_outside``, get weight 0 and the rest is renormalised to sum 1 (TensorFlow).

    Nearest indices are computed in float32 like PyTorch and TensorFlow; all are clamped to the input.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; expected one of {RESIZE_MODES}")
    ratio = resize_ratio(size, out, align_corners)
    last = size - 1
    taps: list[list[tuple[int, float]]] = []
    for i in range(out):
        if mode in ("nearest", "nearest_exact"):
            centre = _f32(i + 0.5) if mode == "nearest_exact" else float(i)
            taps.append([(min(math.floor(_f32(centre * _f32(ratio))), last), 1.0)])
            continue
        x = i * ratio if align_corners else (i + 0.5) * ratio - 0.5
        if mode == "linear":
            x = max(x, 0.0)
            low = min(math.floor(x), last)
            t = x - low
            taps.append([(low, 1.0 - t), (min(low + 1, last), t)])
            continue
        low = math.floor(x)
        t = x - low
        cells = [(low + k, keys_cubic_weight(t - k, cubic_coefficient)) for k in (-1, 0, 1, 2)]
        if exclude_outside:
            cells = [(j, w) for j, w in cells if 0 <= j <= last]
            total = sum(w for _, w in cells)
            cells = [(j, w / total) for j, w in cells]
        taps.append([(min(max(j, 0), last), w) for j, w in cells])
    return taps
