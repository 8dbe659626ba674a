"""Pure shape arithmetic, one spatial axis at a time.  No framework is imported.

Every function takes and returns plain ints.  The same numbers drive ``explain``
(which prints the arithmetic), both emitters (which only read the resolved
padding) and the verifier (which checks the frameworks against them).
"""

from __future__ import annotations

from dataclasses import dataclass


def effective_kernel(kernel: int, dilation: int = 1) -> int:
    """Extent covered by a dilated kernel: ``dilation*(kernel-1) + 1``."""
    return dilation * (kernel - 1) + 1


def ceil_div(a: int, b: int) -> int:
    """⌈a / b⌉ for ints (b > 0)."""
    return -(-a // b)


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow/ONNX SAME_UPPER padding for one axis, defined for every stride.

    out = ⌈size / stride⌉; total = max((out-1)*stride + dk - size, 0);
    before = total // 2 and after = total - before (the odd cell goes at the end).

    Returns:
        ``(before, after)``.
    """
    out = ceil_div(size, stride)
    total = max((out - 1) * stride + effective_kernel(kernel, dilation) - size, 0)
    return total // 2, total - total // 2


def conv_output_length(
    size: int, kernel: int, stride: int, dilation: int, pad_before: int, pad_after: int
) -> int:
    """⌊(size + pad_before + pad_after - dk) / stride⌋ + 1 (may be <= 0: the caller reports it)."""
    return (size + pad_before + pad_after - effective_kernel(kernel, dilation)) // stride + 1


@dataclass(frozen=True)
class PoolAxis:
    """One axis of a pooling window, fully resolved."""

    out: int
    pad_before: int
    pad_after: int
    ceil_extra: int  # cells past the right padding that the last window may cover (ceil_mode); never counted


def pool_axis(
    size: int, window: int, stride: int, pad_before: int, pad_after: int, ceil_mode: bool
) -> PoolAxis:
    """Output length of one pooling axis with PyTorch's ceil_mode rule.

    With ``ceil_mode`` the length is rounded up, except that the last window must start
    inside the input or its left padding (never in the right padding).
    """
    span = size + pad_before + pad_after - window
    if span < 0:
        return PoolAxis(0, pad_before, pad_after, 0)
    if ceil_mode:
        out = ceil_div(span, stride) + 1
        if (out - 1) * stride >= size + pad_before:
            out -= 1
    else:
        out = span // stride + 1
    covered = (out - 1) * stride + window
    extra = max(covered - (size + pad_before + pad_after), 0)
    return PoolAxis(out, pad_before, pad_after, extra)


@dataclass(frozen=True)
class TransposeAxis:
    """One axis of a transposed convolution, as crop of the full output.

    The full output of a transposed convolution is ``(size-1)*stride + dk``.  The
    layer's output is that with ``crop_before`` cells removed at the start and
    ``crop_after`` at the end; a negative ``crop_after`` means extra cells at the end
    (output_padding), which hold only the bias.
    """

    out: int
    full: int
    crop_before: int
    crop_after: int
    output_padding: int


def transpose_axis(
    size: int,
    kernel: int,
    stride: int,
    dilation: int,
    padding: str | int,
    output_padding: int | None,
) -> TransposeAxis:
    """Resolve one axis of a transposed convolution.

    * ``"same"``: out = size*stride; the crop is SAME_UPPER's padding of the forward
      convolution (the odd cell is cropped at the end).
    * ``"valid"``: out = (size-1)*stride + max(dk, stride), or ``+ dk + output_padding``
      when output_padding is given.
    * int ``p``: PyTorch's out = (size-1)*stride - 2p + dk + output_padding.
    """
    dk = effective_kernel(kernel, dilation)
    full = (size - 1) * stride + dk
    if padding == "same":
        out = size * stride
        total = full - out
        if total >= 0:
            before = total // 2
            return TransposeAxis(out, full, before, total - before, 0)
        return TransposeAxis(out, full, 0, total, -total)
    if padding == "valid":
        extra = max(stride - dk, 0) if output_padding is None else output_padding
        return TransposeAxis(full + extra, full, 0, -extra, extra)
    p = int(padding)
    extra = output_padding or 0
    return TransposeAxis(full - 2 * p + extra, full, p, p - extra, extra)
