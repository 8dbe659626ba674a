"""Channel and element-wise arithmetic for merge, shuffle, slice, pad and crop layers.  No framework is imported.

Shapes here are channels-first with the batch excluded, as everywhere in the plan:
``(C, *spatial)`` for a feature map, ``(C,)`` for flat features.
"""

from __future__ import annotations

PAD_MODES = ("constant", "reflect", "replicate")


def broadcast_shapes(
    shapes: list[tuple[int, ...]], names: list[str] | None = None
) -> tuple[int, ...]:
    """The output shape of an element-wise merge (add, multiply, subtract, maximum, minimum, average).

    The rule, defined once for every element-wise merge:

    * a flat input ``(K,)`` merged with a feature map counts as ``(K, 1, ..., 1)`` (one value per
      channel, e.g. a squeeze-excite gate from a dense layer);
    * then NumPy broadcasting on the channels-first shapes, which all have the same rank: along
      every axis the sizes are equal or 1, and the output takes the size that is not 1.

    So a (C, 1, 1) or (C,) gate scales a (C, H, W) map, a (1, H, W) map gates every channel,
    and (C, H, W) + (C, H, W) is the plain sum.  Because broadcasting is decided axis by axis,
    the same rule holds on the channels-last tensors (the axes are only permuted).

    Raises:
        ValueError: naming the first axis whose sizes cannot broadcast (and the inputs, if ``names``).
    """
    labels = (
        [f"'{name}' {list(shape)}" for name, shape in zip(names, shapes)]
        if names
        else [str(s) for s in shapes]
    )
    listed = ", ".join(labels)
    rank = max(len(shape) for shape in shapes)
    padded = [shape + (1,) * (rank - len(shape)) if len(shape) == 1 else shape for shape in shapes]
    if any(len(shape) != rank for shape in padded):
        raise ValueError(
            f"inputs {listed} have different ranks; only a flat (C) input may meet a feature map"
        )
    out = []
    axis_names = ["channels"] + [f"spatial axis {k}" for k in range(1, rank)]
    for axis in range(rank):
        sizes = {shape[axis] for shape in padded} - {1}
        if len(sizes) > 1:
            raise ValueError(
                f"inputs {listed} cannot broadcast along {axis_names[axis]}: sizes {sorted(sizes)} "
                "(each axis must be equal or 1)"
            )
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def channel_shuffle_permutation(channels: int, groups: int) -> list[int]:
    """Input channel read by each output channel of a channel shuffle.

    The channels are seen as a (groups, channels/groups) matrix, row by row, and read out column
    by column: output k·groups + g is input g·(channels/groups) + k.  For 8 channels in 2 groups:
    [0, 4, 1, 5, 2, 6, 3, 7].
    """
    if channels % groups:
        raise ValueError(
            f"channel_shuffle: {channels} channels are not divisible into {groups} groups"
        )
    per_group = channels // groups
    return [g * per_group + k for k in range(per_group) for g in range(groups)]


def padded_length(size: int, before: int, after: int, mode: str) -> int:
    """Length after padding one axis; reflect needs each side < size, replicate a non-empty input.

    Reflect mirrors about the edge cell without repeating it (PyTorch ReflectionPad, NumPy/TF
    ``reflect``): padding [1, 2, 3] by 2 gives [3, 2, 1, 2, 3, 2, 1].
    """
    if mode not in PAD_MODES:
        raise ValueError(f"unknown pad mode {mode!r}; expected one of {PAD_MODES}")
    if mode == "reflect" and max(before, after) >= size:
        raise ValueError(
            f"reflect padding ({before}, {after}) needs each side smaller than the input length {size}"
        )
    return size + before + after


def pad_source_index(index: int, size: int, mode: str) -> int | None:
    """Input cell copied to padded position ``index`` (``index`` counts from the first input cell).

    None for a constant-padded cell.
    """
    if 0 <= index < size:
        return index
    if mode == "constant":
        return None
    if mode == "replicate":
        return min(max(index, 0), size - 1)
    return -index if index < 0 else 2 * (size - 1) - index


def cropped_length(size: int, before: int, after: int) -> int:
    """Length after cropping one axis; at least one cell must remain."""
    if before + after >= size:
        raise ValueError(f"cropping ({before}, {after}) leaves nothing of length {size}")
    return size - before - after
