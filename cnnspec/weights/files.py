"""Weight files: read them as users have them, write them atomically.

Torch files are read with ``torch.load(weights_only=True)`` (no pickled code ever runs) or with
safetensors; Keras files are ``.weights.h5``.  Files written by training code rarely hold a bare
``state_dict``: a checkpoint wraps it (``{'state_dict': ...}``, ``{'model': ...}``,
``{'model_state_dict': ...}``) and ``nn.DataParallel``, Lightning or ``torch.compile`` prefix every
key (``module.``, ``model.``, ``_orig_mod.``).  Those wrappings are undone when doing so makes the
file's keys the model's, and each step is reported as a one-line note; when the tensors still do not
fit, the error lists what is missing, unexpected or shaped differently, a few names each.

Neither torch nor keras is imported by this module at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnspec.atomic import atomic_path
from cnnspec.errors import CnnspecError
from cnnspec.weights.transfer import (
    KERAS_WEIGHTS_SUFFIX,
    WeightMismatch,
    _framework_of,
    _plan_of,
    transfer_weights,
)

SAFETENSORS_SUFFIX = ".safetensors"

# Checkpoint entries that hold the model's state_dict, in the order they are tried.
CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
# Key prefixes added by wrappers: nn.DataParallel / DistributedDataParallel, Lightning, torch.compile.
KEY_PREFIXES = ("module.", "model.", "_orig_mod.")

_SHOWN_NAMES = 3


def _is_keras_file(path: Path) -> bool:
    return path.name.endswith(KERAS_WEIGHTS_SUFFIX)


def _unpickling_reason(error: Exception) -> str:
    """The informative line of torch's weights_only error (not its advice to load unsafely)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "unsupported GLOBAL" in line or "Unsupported" in line or "not allowed" in line.lower():
            return line
    informative = [
        line
        for line in lines
        if "weights_only" not in line and "Weights only load failed" not in line
    ]
    return informative[0] if informative else type(error).__name__


def _read_torch_file(path: Path) -> Any:
    if path.name.endswith(SAFETENSORS_SUFFIX):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CnnspecError(
                f"{path}: reading .safetensors files needs safetensors: pip install safetensors"
            ) from None
        try:
            return load_file(str(path), device="cpu")
        except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
            raise CnnspecError(f"cannot read {path} as a safetensors file: {error}") from None
    import pickle

    import torch

    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        AttributeError,
    ) as error:
        raise CnnspecError(
            f"refusing to load {path}: not a plain torch weights file (state_dict of tensors) "
            f"readable with weights_only=True: {_unpickling_reason(error)}"
        ) from None


def _is_tensor_dict(value: Any) -> bool:
    import torch

    return isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values())


def unwrap_state_dict(
    state: Any, expected_keys: set[str], shown: str = "the file"
) -> tuple[dict, list[str]]:
    """The model's state_dict inside what a torch file held, and a note per unwrapping step.

    Args:
        state: what ``torch.load`` returned.
        expected_keys: the keys of the model's own ``state_dict``.
        shown: how to name the file in notes.

    Returns:
        The state dict and the notes (empty when the file held exactly the model's keys).

    Raises:
        CnnspecError: no dict of tensors can be found.
    """
    notes: list[str] = []
    while isinstance(state, dict) and not _is_tensor_dict(state):
        entry = next((key for key in CHECKPOINT_KEYS if isinstance(state.get(key), dict)), None)
        if entry is None:
            break
        others = len(state) - 1
        notes.append(
            f"{shown} is a checkpoint; using its '{entry}' entry"
            + (f" (ignoring {others} other entr{'y' if others == 1 else 'ies'})" if others else "")
        )
        state = state[entry]
    if not isinstance(state, dict):
        raise CnnspecError(
            f"{shown} does not hold a state_dict (a dict of tensors) but a {type(state).__name__}"
        )
    if not _is_tensor_dict(state):
        kinds = sorted({type(v).__name__ for v in state.values()})
        raise CnnspecError(
            f"{shown} holds a dict of {', '.join(kinds) or 'nothing'}, not a state_dict of tensors; "
            f"checkpoint entries looked for: {', '.join(CHECKPOINT_KEYS)}"
        )
    for _ in range(len(KEY_PREFIXES) + 1):  # e.g. 'model.module.' needs two steps
        if set(state) <= expected_keys:
            break
        prefix = next((p for p in KEY_PREFIXES if all(key.startswith(p) for key in state)), None)
        if prefix is None:
            break
        stripped = {key[len(prefix) :]: value for key, value in state.items()}
        if len(set(stripped) & expected_keys) <= len(set(state) & expected_keys):
            break
        notes.append(f"removed the prefix '{prefix}' from the {len(state)} keys of {shown}")
        state = stripped
    return state, notes


def _mismatch_summary(state: dict, model_state: dict) -> str:
    """What keeps a state_dict from fitting a model: a few names per kind, not every key."""

    def some(names) -> str:
        names = sorted(names)
        shown = ", ".join(names[:_SHOWN_NAMES])
        return shown + (
            f", … ({len(names) - _SHOWN_NAMES} more)" if len(names) > _SHOWN_NAMES else ""
        )

    missing = set(model_state) - set(state)
    unexpected = set(state) - set(model_state)
    reshaped = [
        f"{key} (file {tuple(state[key].shape)}, model {tuple(model_state[key].shape)})"
        for key in sorted(set(state) & set(model_state))
        if tuple(state[key].shape) != tuple(model_state[key].shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} of the model's tensors missing: {some(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} not in the model: {some(unexpected)}")
    if reshaped:
        parts.append(f"{len(reshaped)} with another shape: {some(reshaped)}")
    return "; ".join(parts)


def load_weights_file(model, path, spec=None) -> list[str]:
    """Load weights from a file into ``model``.

    A Keras ``.weights.h5`` file goes into a keras model with ``model.load_weights``; a
    ``.safetensors`` file, or any other file (read with ``torch.load(weights_only=True)``, so
    no pickled code is ever executed), is a torch ``state_dict``, unwrapped from a checkpoint
    and stripped of wrapper prefixes when needed (see :func:`unwrap_state_dict`), then loaded
    with ``load_state_dict(strict=True)``.  When the file's framework is not the model's, the
    matching model is built from ``spec``, loaded, and its weights are transferred.

    Args:
        model: a ``torch.nn.Module`` or ``keras.Model``.
        path: the weights file.
        spec: the model's spec; needed only for a file of the other framework.

    Returns:
        One-line notes on what was unwrapped (empty for a plain state_dict).

    Raises:
        CnnspecError: the file is missing or unreadable, or is not a plain weights file.
        WeightMismatch: the file's tensors do not fit the model.
    """
    path = Path(path)
    if not path.is_file():
        raise CnnspecError(f"weights file not found: {path}")
    model_kind = _framework_of(model, "given")
    file_kind = "keras" if _is_keras_file(path) else "torch"
    if model_kind != file_kind:
        if spec is None:
            raise CnnspecError(
                f"{path} holds {file_kind} weights but the model is a {model_kind} model; pass the spec to convert"
            )
        from cnnspec.targets.build import build

        plan = _plan_of(spec)
        carrier = build(plan, file_kind)
        notes = load_weights_file(carrier, path)
        transfer_weights(carrier, model, plan)
        return notes
    if file_kind == "keras":
        try:
            model.load_weights(str(path))
        except Exception as error:  # noqa: BLE001 - keras raises ValueError / OSError variants
            raise WeightMismatch(f"cannot load keras weights {path}: {error}") from None
        return []
    model_state = model.state_dict()
    state, notes = unwrap_state_dict(_read_torch_file(path), set(model_state), shown=str(path))
    problems = _mismatch_summary(state, model_state)
    if problems:
        raise WeightMismatch(f"the weights in {path} do not fit the model: {problems}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:  # e.g. a dtype torch cannot copy
        raise WeightMismatch(
            f"the weights in {path} do not fit the model: {str(error).splitlines()[0]}"
        ) from None
    return notes


def save_weights_file(model, path, *, overwrite: bool = False) -> Path:
    """Save a model's weights atomically.

    A torch model is saved as its ``state_dict`` (``torch.save``, or safetensors for a path
    ending in ``.safetensors``); a keras model with ``save_weights``, to a path that must end in
    ``.weights.h5``.  The file is written to a temporary name in the same directory (created if
    missing) and moved into place, so a failure never leaves a partial file behind.

    Args:
        model: a ``torch.nn.Module`` or ``keras.Model``.
        path: the destination file.
        overwrite: replace an existing file (otherwise :class:`OutputExistsError`).

    Returns:
        The path written.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false.
        CnnspecError: a keras path that does not end in ``.weights.h5``.
    """
    path = Path(path)
    kind = _framework_of(model, "given")
    if kind == "keras" and not _is_keras_file(path):
        raise CnnspecError(f"keras weights files must end in '{KERAS_WEIGHTS_SUFFIX}': {path}")
    suffix = (
        KERAS_WEIGHTS_SUFFIX if kind == "keras" else ".tmp"
    )  # keras insists on the .weights.h5 ending
    with atomic_path(path, overwrite=overwrite, suffix=suffix) as temp:
        if kind == "keras":
            model.save_weights(str(temp), overwrite=True)
        elif path.name.endswith(SAFETENSORS_SUFFIX):
            from safetensors.torch import save_file

            save_file(
                {
                    key: value.detach().cpu().contiguous()
                    for key, value in model.state_dict().items()
                },
                str(temp),
            )
        else:
            import torch

            torch.save(
                {key: value.detach().cpu().clone() for key, value in model.state_dict().items()},
                temp,
            )
    return path


__all__ = [
    "CHECKPOINT_KEYS",
    "KEY_PREFIXES",
    "load_weights_file",
    "save_weights_file",
    "unwrap_state_dict",
]
