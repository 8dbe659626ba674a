"""resolve(spec) -> Plan: every shape, padding and parameter count, decided once.

The plan is framework-free.  Both emitters, the weight transfer and the verifier
*read* it; none of them re-derives padding or shapes.  Shapes exclude the batch
dimension and are stored channels-first: ``(C, *spatial)`` for feature maps and
``(F,)`` for flat features; :func:`channels_last` gives the other layout.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cnnspec.engine import shapes as S
from cnnspec.engine.sizes import Size
from cnnspec.errors import Problem, SpecError

if TYPE_CHECKING:  # pragma: no cover
    from cnnspec.spec.models import ModelSpec

Shape = tuple[int, ...]
Pads = tuple[tuple[int, int], ...]

LAYOUT_NAMES = {1: ("NCL", "NLC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}
# spatial axes, in the order every per-axis value uses
AXIS_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def channels_last(shape: Shape) -> Shape:
    """(C, *spatial) -> (*spatial, C); flat shapes are unchanged."""
    if len(shape) <= 1:
        return tuple(shape)
    return tuple(shape[1:]) + (shape[0],)


@dataclass(frozen=True)
class ParamTensor:
    """One learned (or tracked) tensor of a layer, in a neutral description.

    ``shape`` is given channels-first / PyTorch-like (out, in, *kernel) for kernels;
    the emitters and the weight transfer own the framework layouts.
    """

    name: str
    shape: Shape
    trainable: bool = True

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class LayerPlan:
    """A layer with everything resolved.

    Attributes:
        index: position in ``spec.layers``.
        name: the unique layer name (spec name or ``<type>_<index>``).
        type: the spec ``type``.
        family: the emitter family (``conv``, ``pool``, ...).
        spec: the validated pydantic layer.
        inputs: names of the layers (or ``input``) it reads.
        input_shapes: their shapes, channels-first, batch excluded.
        output_shape: channels-first, batch excluded.
        kernel_size, stride, dilation: per spatial dim (None where meaningless).
        padding: per spatial dim ``(before, after)`` actually applied by the op
            (conv / pool / zero_pad); for transposed convolutions the crop of the full
            output (``after`` negative = extra cells at the end).
        padding_mode: ``valid`` / ``same`` / ``explicit`` as written in the spec.
        ceil_extra: pools with ceil_mode: cells past the right padding that the last
            window covers (never counted, never a max).
        count_include_pad: average pools: whether explicit padding counts in the divisor.
        output_padding: transposed convolutions: extra cells at the end per dim.
        params: the layer's tensors (trainable and non-trainable).
        size_formulas: per spatial dim, the output-size arithmetic as text.
        param_formula: the parameter count as text.
        flat_segments: for flat outputs, the pieces the vector is made of, in order:
            ``(C, *spatial)`` for a flattened feature map (PyTorch lays it out C-major,
            Keras spatial-major: the two vectors are a permutation of each other) or
            ``(F,)`` for features already flat (same order in both). None for feature maps.
        input_sizes / sizes: per spatial axis of the (first) input and of the output, the
            size as a formula of the model's input size (:class:`~cnnspec.engine.sizes.Size`);
            fixed numbers when the spec fixes the input size.
    """

    index: int
    name: str
    type: str
    family: str
    spec: Any
    inputs: tuple[str, ...]
    input_shapes: tuple[Shape, ...]
    output_shape: Shape
    kernel_size: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    dilation: tuple[int, ...] | None = None
    padding: Pads | None = None
    padding_mode: str | None = None
    ceil_extra: tuple[int, ...] | None = None
    count_include_pad: bool | None = None
    output_padding: tuple[int, ...] | None = None
    params: tuple[ParamTensor, ...] = ()
    size_formulas: tuple[str, ...] = ()
    param_formula: str = ""
    flat_segments: tuple[Shape, ...] | None = None
    input_sizes: tuple[Size, ...] = ()
    sizes: tuple[Size, ...] = ()

    @property
    def input_shape(self) -> Shape:
        return self.input_shapes[0]

    @property
    def open_axes(self) -> tuple[bool, ...]:
        """Per spatial axis of the input: whether its size varies with the model's input size.

        Where it does, a target must compute anything size-dependent ('same' padding at a
        stride, ceil-mode overhang) from the tensor at run time, not from the plan's numbers.
        """
        return tuple(not size.is_fixed for size in self.input_sizes)

    @property
    def is_open(self) -> bool:
        """Whether any input axis of this layer varies with the model's input size."""
        return any(self.open_axes)

    @property
    def holds_flattened_map(self) -> bool:
        """Whether this flat output holds a feature map laid out as a vector, in either order (a
        flatten in Keras' order is one flat piece, with nothing to permute, all the same)."""
        return any(len(segment) > 1 for segment in self.flat_segments or ()) or (
            self.family == "flatten" and len(self.input_shape) > 1
        )

    @property
    def strided_open_axes(self) -> tuple[bool, ...]:
        """Per spatial axis: open and strided, where 'same' padding and ceil-mode overhang vary with the size.

        With stride 1 both are fixed (``dk − 1`` cells for 'same', no overhang); with a larger
        stride they depend on the input length modulo the stride.
        """
        strides = self.stride or (1,) * len(self.open_axes)
        return tuple(is_open and s > 1 for is_open, s in zip(self.open_axes, strides))

    @property
    def padding_varies(self) -> bool:
        """Whether the planned 'same' padding holds at the planning size only (a target computes it at run time)."""
        return self.padding_mode == "same" and any(self.strided_open_axes)

    @property
    def overhang_varies(self) -> bool:
        """Whether the planned ceil-mode overhang holds at the planning size only (a target computes it at run time)."""
        return bool(getattr(self.spec, "ceil_mode", False)) and any(self.strided_open_axes)

    @property
    def output_shape_last(self) -> Shape:
        return channels_last(self.output_shape)

    @property
    def trainable_params(self) -> int:
        return sum(p.size for p in self.params if p.trainable)

    @property
    def non_trainable_params(self) -> int:
        return sum(p.size for p in self.params if not p.trainable)

    @property
    def total_params(self) -> int:
        return self.trainable_params + self.non_trainable_params

    @property
    def spatial_rank(self) -> int:
        return len(self.input_shape) - 1

    @property
    def is_symmetric_padding(self) -> bool:
        return self.padding is None or all(b == a for b, a in self.padding)

    @property
    def activation(self) -> str | None:
        """The inline activation (None for none / 'linear')."""
        act = getattr(self.spec, "activation", None)
        return None if act in (None, "linear") else act


@dataclass(frozen=True)
class JoinNote:
    """A merge whose inputs have equal sizes at some input sizes only (a U-Net skip at odd sizes).

    ``period`` is set when they agree exactly at the multiples of it; ``example`` is an input
    size near the planning size where they differ, with ``values`` the two sizes there.
    """

    layer: str
    axis: str
    first: str
    first_size: str
    other: str
    other_size: str
    period: int | None
    example: int
    values: tuple[int, int]

    def text(self) -> str:
        """The note in English (``explain`` translates it)."""
        return (
            f"'{self.layer}' joins '{self.first}' ({self.first_size}) and '{self.other}' ({self.other_size}) "
            f"along {self.axis}: they agree {size_rule(self.axis, self.period)} (at {self.axis} = {self.example}: {self.values[0]} and "
            f"{self.values[1]})"
        )


@dataclass(frozen=True)
class MultipleNote:
    """A layer that takes only multiples of ``multiple`` on an axis (a pixel unshuffle), whose
    input there follows the open input size.

    ``period`` is set when the input size's multiples of it are exactly the sizes accepted;
    ``example`` is an input size near the planning size that is refused, ``value`` the layer's
    input there.
    """

    layer: str
    axis: str
    size: str
    multiple: int
    period: int | None
    example: int
    value: int

    def text(self) -> str:
        """The note in English (``explain`` translates it)."""
        return (
            f"'{self.layer}' takes multiples of {self.multiple} along {self.axis} ({self.size}): "
            f"{size_rule(self.axis, self.period)} (at {self.axis} = {self.example}: {self.value})"
        )


def size_rule(axis: str, period: int | None) -> str:
    """Which input sizes a note's layer takes, in English."""
    return f"only when {axis} is a multiple of {period}" if period else "only at some sizes"


def accepted_period(accepts: dict[int, bool], reference: int) -> tuple[int | None, int] | None:
    """Over sample input sizes (size -> whether it is taken): the period whose multiples are
    exactly the sizes taken (None if there is none) and the refused size nearest the
    reference; None when every size is taken."""
    taken = [n for n, ok in accepts.items() if ok]
    refused = [n for n, ok in accepts.items() if not ok]
    if not refused:
        return None
    period = math.gcd(*taken) if taken else 0
    exact = period > 1 and all(n % period != 0 for n in refused)
    return (period if exact else None), min(refused, key=lambda n: abs(n - reference))


@dataclass(frozen=True)
class Plan:
    """The resolved model."""

    spec: ModelSpec
    name: str
    rank: int
    input_shape: Shape
    layers: tuple[LayerPlan, ...]
    open_axes: tuple[bool, ...] = ()
    size_source: str = "fixed"
    size_notes: tuple[JoinNote | MultipleNote, ...] = ()
    _by_name: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        self._by_name.update({layer.name: layer for layer in self.layers})

    def layer(self, name: str) -> LayerPlan:
        """The layer called ``name``."""
        return self._by_name[name]

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].output_shape

    @property
    def is_open(self) -> bool:
        """Whether the spec leaves some input axis open (``size: [null, ...]``)."""
        return any(self.open_axes)

    @property
    def input_sizes(self) -> tuple[Size, ...]:
        """The input's spatial axes: named variables where open, numbers where fixed."""
        return tuple(
            Size.of_axis(name) if open_axis else Size.fixed(n)
            for name, open_axis, n in zip(
                AXIS_NAMES[self.rank], self.open_axes, self.input_shape[1:]
            )
        )

    @property
    def size_steps(self) -> tuple[int, ...]:
        """Per spatial axis, the step between input sizes its joins accept: the least common
        multiple of the join periods on that axis (a U-Net skip after one pooling: 2), else 1."""
        names = AXIS_NAMES[self.rank]
        return tuple(
            math.lcm(
                1, *(note.period for note in self.size_notes if note.axis == name and note.period)
            )
            for name in names
        )

    @property
    def layouts(self) -> tuple[str, str]:
        """Names of the channels-first and channels-last layouts for this rank (e.g. NCHW, NHWC)."""
        return LAYOUT_NAMES[self.rank]

    @property
    def trainable_params(self) -> int:
        return sum(layer.trainable_params for layer in self.layers)

    @property
    def non_trainable_params(self) -> int:
        return sum(layer.non_trainable_params for layer in self.layers)

    @property
    def total_params(self) -> int:
        return self.trainable_params + self.non_trainable_params

    def activation_elements(self, batch: int = 1) -> int:
        """Elements of every layer output plus the input, for one batch (memory estimates)."""
        total = math.prod(self.input_shape)
        for layer in self.layers:
            total += math.prod(layer.output_shape)
        return total * batch


def fmt_count(n: int) -> str:
    """A count with thousands separators (``1,234``)."""
    return f"{n:,}"


def planned_size_after(
    spec, reference: Iterable[int], offsets: Iterable[int], tries: int = 32
) -> tuple[int, ...]:
    """The size the spec (anything :func:`resolve` takes) plans at nearest past
    ``reference + offsets`` (``offsets`` in steps
    of ``size_steps``; 0 for a fixed axis), searched axis by axis (the others at the reference),
    as a join or a layer may take only some sizes without a period (YOLOv5's Focus then an
    upsampled skip: H a multiple of 4, or 3 more than one).

    Raises:
        SpecError: the spec plans at no size within ``tries`` steps on some axis, or not at the
            combination: the refusal at the first candidate, naming the layer.
    """
    reference, offsets = tuple(reference), tuple(offsets)
    steps = resolve(spec, input_size=reference).size_steps
    chosen = list(reference)
    for axis, (offset, step) in enumerate(zip(offsets, steps)):
        if not offset:
            continue
        for extra in range(tries):
            candidate = list(reference)
            candidate[axis] = reference[axis] + (offset + extra) * step
            try:
                resolve(spec, input_size=candidate)
            except SpecError:
                continue
            chosen[axis] = candidate[axis]
            break
        else:
            chosen[axis] = reference[axis] + offset * step
    resolve(spec, input_size=chosen)
    return tuple(chosen)


#: The size an open axis is planned at when neither the caller nor the spec names one.
ASSUMED_SIZE = 224


class _Resolver:
    def __init__(self, spec: ModelSpec, input_size: tuple[int, ...] | None = None):
        self.spec = spec
        self.rank = spec.rank
        self.input_size = input_size
        self.problems: list[Problem] = []
        self.segments_of: dict[str, tuple[Shape, ...]] = {}
        self.sizes_of: dict[str, tuple[Size, ...]] = {}
        self.open_flat: set[str] = set()
        self.current_inputs: tuple[str, ...] = ()  # the inputs of the layer being planned
        self.size_notes: list[JoinNote | MultipleNote] = []
        self.size: tuple[int, ...] = ()
        from cnnspec.layers import REGISTRY

        self.registry = REGISTRY

    # -- errors -----------------------------------------------------------
    def fail(
        self, index: int, message: str, field_name: str | None = None, hint: str | None = None
    ) -> None:
        path: tuple = ("layers", index) + ((field_name,) if field_name else ())
        raise _LayerFailure(Problem(message, path, hint))

    # -- helpers ----------------------------------------------------------
    def per_dim(self, index: int, value, field_name: str, rank: int) -> tuple[int, ...]:
        if isinstance(value, int):
            return (value,) * rank
        if len(value) != rank:
            self.fail(
                index,
                f"{field_name} has {len(value)} values {list(value)} but this layer's input has {rank} spatial dim(s) ({', '.join(AXIS_NAMES[rank])})",
                field_name,
                hint=f"give one int, or exactly {rank} (one per spatial dim)",
            )
        return tuple(value)

    def explicit_pads(self, index: int, value, rank: int, field_name: str = "padding") -> Pads:
        if isinstance(value, int):
            return ((value, value),) * rank
        if len(value) != rank:
            self.fail(
                index,
                f"{field_name} has {len(value)} entries {value} but this layer's input has {rank} spatial dim(s) ({', '.join(AXIS_NAMES[rank])})",
                field_name,
                hint=f"give one int, {rank} ints (symmetric), or {rank} [before, after] pairs",
            )
        if all(isinstance(v, int) for v in value):
            return tuple((v, v) for v in value)
        return tuple((int(b), int(a)) for b, a in value)

    def require_spatial(
        self, index: int, layer_type: str, shape: Shape, rank: int | None = None
    ) -> int:
        spatial = len(shape) - 1
        if spatial == 0:
            self.fail(
                index,
                f"{layer_type} needs a spatial input (C, *spatial) but its input is flat {list(shape)}",
                hint="a flatten or dense layer before it removed the spatial dims; move it after the spatial layers",
            )
        if rank is not None and spatial != rank:
            self.fail(
                index,
                f"{layer_type} is a {rank}-D layer but its input has {spatial} spatial dim(s) {list(shape)} (the model is {self.rank}-D)",
                "type",
                hint=f"use the {spatial}d variant of this layer",
            )
        return spatial

    def check_positive(
        self, index: int, name: str, out: Iterable[int], formulas: Iterable[str]
    ) -> None:
        out = list(out)
        for axis, (size, formula) in enumerate(zip(out, formulas)):
            if size <= 0:
                self.fail(
                    index,
                    f"output size collapses to {size} on axis {AXIS_NAMES[len(out)][axis]}: {formula}",
                    hint="use a smaller kernel/stride, padding, or a larger input",
                )

    # -- the input size ---------------------------------------------------
    def planning_size(self) -> tuple[tuple[int, ...], str]:
        """The size the numbers are computed at, and where it came from."""
        declared = self.spec.input.size
        if self.input_size is not None:
            given = tuple(self.input_size)
            if len(given) != len(declared):
                raise SpecError(
                    [
                        Problem(
                            f"the input size {'×'.join(map(str, given))} has {len(given)} axes but the model has "
                            f"{len(declared)} ({', '.join(AXIS_NAMES[self.rank])})",
                            ("input", "size"),
                        )
                    ]
                )
            for axis, (fixed, n) in enumerate(zip(declared, given)):
                if fixed is not None and fixed != n:
                    name = AXIS_NAMES[self.rank][axis]
                    raise SpecError(
                        [
                            Problem(
                                f"this model's input size is fixed at {'×'.join(map(str, declared))}: "
                                f"{name} = {n} is not accepted (expected {fixed})",
                                ("input", "size", axis),
                                "write null for the axes the model should accept at any size",
                            )
                        ]
                    )
            return given, "given"
        if None not in declared:
            return tuple(int(n) for n in declared if n is not None), "fixed"
        if self.spec.input.reference_size is not None:
            return tuple(self.spec.input.reference_size), "reference"
        return tuple(ASSUMED_SIZE if n is None else n for n in declared), "assumed"

    # -- the walk ---------------------------------------------------------
    def run(self) -> Plan:
        spec = self.spec
        size, size_source = self.planning_size()
        self.size = size
        open_axes = spec.input.open_axes
        input_shape: Shape = (spec.input.channels, *size)
        self.sizes_of["input"] = tuple(
            Size.of_axis(name) if is_open else Size.fixed(n)
            for name, is_open, n in zip(AXIS_NAMES[self.rank], open_axes, size)
        )
        names = self._names()
        shapes: dict[str, Shape] = {"input": input_shape}
        order: dict[str, int] = {"input": -1}
        layers: list[LayerPlan] = []
        for index, (layer, name) in enumerate(zip(spec.layers, names)):
            try:
                inputs = self._inputs(index, layer, names, order, layers)
                in_shapes = tuple(shapes[n] for n in inputs)
                planned = self._layer(index, name, layer, inputs, in_shapes)
            except _LayerFailure as failure:
                self.problems.append(failure.problem)
                break
            layers.append(planned)
            if planned.flat_segments is not None:
                self.segments_of[name] = planned.flat_segments
            self.sizes_of[name] = planned.sizes
            shapes[name] = planned.output_shape
            order[name] = index
        if not self.problems:
            self._check_all_used(layers)
        if self.problems:
            if size_source == "given" and any(open_axes):
                self.problems = [
                    dataclasses.replace(
                        problem,
                        message=f"{problem.message} (at the input size {'×'.join(map(str, size))})",
                    )
                    for problem in self.problems
                ]
            elif size_source in ("assumed", "reference") and any(open_axes):
                self.problems = [
                    dataclasses.replace(
                        problem,
                        message=f"{problem.message} (planned at the {size_source} input size "
                        f"{'×'.join(map(str, size))}; input.reference_size or --input-size sets another)",
                    )
                    for problem in self.problems
                ]
            raise SpecError(self.problems)
        return Plan(
            spec=spec,
            name=spec.name,
            rank=self.rank,
            input_shape=input_shape,
            layers=tuple(layers),
            open_axes=open_axes,
            size_source=size_source,
            size_notes=tuple(self.size_notes),
        )

    def _check_all_used(self, layers: list[LayerPlan]) -> None:
        """Every layer must feed the output (the last layer); a dead branch is almost always a wiring mistake."""
        used = {layers[-1].name}
        for layer in reversed(layers):
            if layer.name in used:
                used.update(layer.inputs)
        for layer in layers:
            if layer.name not in used:
                self.problems.append(
                    Problem(
                        f"the output of '{layer.name}' is never used: the model's output is the last layer "
                        f"('{layers[-1].name}') and nothing after '{layer.name}' reads it",
                        ("layers", layer.index),
                        "connect it with 'inputs:' of a later layer, or remove it",
                    )
                )
                return

    def _names(self) -> list[str]:
        names: list[str] = []
        seen: dict[str, int] = {}
        layer: Any
        for index, layer in enumerate(self.spec.layers):
            name = layer.name or f"{layer.type}_{index}"
            if name in seen:
                self.problems.append(
                    Problem(
                        f"duplicate layer name '{name}' (also layers[{seen[name]}])",
                        ("layers", index, "name"),
                        "layer names must be unique; unnamed layers are called <type>_<index>",
                    )
                )
            seen.setdefault(name, index)
            names.append(name)
        if self.problems:
            raise SpecError(self.problems)
        return names

    def _inputs(
        self, index: int, layer, names: list[str], order: dict[str, int], built: list[LayerPlan]
    ) -> tuple[str, ...]:
        if layer.inputs is None:
            return ("input",) if index == 0 else (names[index - 1],)
        for position, ref in enumerate(layer.inputs):
            if ref in order:
                continue
            path_field = "inputs"
            if ref in names:
                later = names.index(ref)
                message = (
                    f"inputs[{position}] refers to '{ref}', which is this layer itself"
                    if later == index
                    else f"inputs[{position}] refers to '{ref}' (layers[{later}]), which comes later; inputs must be earlier layers (no cycles)"
                )
                raise _LayerFailure(Problem(message, ("layers", index, path_field, position)))
            close = difflib.get_close_matches(ref, list(order), n=1)
            raise _LayerFailure(
                Problem(
                    f"inputs[{position}] refers to unknown layer '{ref}'",
                    ("layers", index, path_field, position),
                    f"did you mean '{close[0]}'?" if close else "known so far: " + ", ".join(order),
                )
            )
        if self.registry.definition(layer.type).arity == "one" and len(layer.inputs) != 1:
            raise _LayerFailure(
                Problem(
                    f"a {layer.type} layer reads exactly one input, got {len(layer.inputs)}",
                    ("layers", index, "inputs"),
                    "use add or concat to merge several",
                )
            )
        return tuple(layer.inputs)

    def _layer(
        self, index: int, name: str, layer, inputs: tuple[str, ...], in_shapes: tuple[Shape, ...]
    ) -> LayerPlan:
        definition = self.registry.definition(layer.type)
        self.current_inputs = inputs  # for a plan that asks where its input comes from
        fields = definition.plan(self, index, layer, in_shapes)
        if len(fields["output_shape"]) == 1:
            fields["flat_segments"] = definition.flat_segments(
                self, index, inputs, in_shapes, fields["output_shape"]
            )
        planned = LayerPlan(
            index=index,
            name=name,
            type=layer.type,
            family=definition.family,
            spec=layer,
            inputs=inputs,
            input_shapes=in_shapes,
            input_sizes=self.sizes_of[inputs[0]],
            **fields,
        )
        in_sizes = tuple(self.sizes_of[n] for n in inputs)
        sizes = definition.output_sizes(planned, in_sizes)
        self._check_open_flat(index, name, planned, inputs)
        self._check_joined_sizes(planned, in_sizes, sizes)
        self._check_multiple_sizes(planned, in_sizes[0], definition.input_multiple(planned))
        return dataclasses.replace(planned, sizes=tuple(sizes))

    def _check_open_flat(
        self, index: int, name: str, planned: LayerPlan, inputs: tuple[str, ...]
    ) -> None:
        """A flat vector whose length follows the input size cannot feed learned parameters."""
        open_sources = [n for n in inputs if n in self.open_flat]
        flattens_open_map = planned.is_open and planned.holds_flattened_map
        if len(planned.output_shape) == 1 and (open_sources or flattens_open_map):
            if open_sources and planned.params:
                source = open_sources[0]
                self.fail(
                    index,
                    f"'{name}' has a parameter count that depends on the input size: its input '{source}' is a "
                    f"flat vector whose length follows the open input size ({planned.input_shape[0]:,} at "
                    f"{'×'.join(map(str, self.size))})",
                    hint="fix input.size, or pool to a fixed size first (global_avg_pool, or adaptive_avg_pool2d "
                    "before flatten)",
                )
            self.open_flat.add(name)

    def _check_joined_sizes(
        self, planned: LayerPlan, in_sizes: tuple[tuple[Size, ...], ...], sizes: tuple[Size, ...]
    ) -> None:
        """Inputs joined by a merge may agree at the planning size only; say at which sizes they do."""
        if len(in_sizes) < 2 or not sizes:
            return
        for axis, out in enumerate(sizes):
            if out.is_fixed:
                continue
            axis_name = AXIS_NAMES[self.rank][self._model_axis(out)]
            n_reference = self.size[self._model_axis(out)]
            for name, other in zip(planned.inputs, in_sizes):
                if len(other) != len(sizes) or other[axis] == out:
                    continue
                if other[axis].is_fixed and other[axis].constant == 1:
                    continue  # broadcast
                accepts = {
                    n: other[axis].at(n) == out.at(n)
                    for n in range(1, 4 * n_reference + 1)
                    if min(other[axis].at(n), out.at(n)) > 0
                }
                found = accepted_period(accepts, n_reference)
                if found is None:
                    continue
                period, near = found
                self.size_notes.append(
                    JoinNote(
                        layer=planned.name,
                        axis=axis_name,
                        first=planned.inputs[0],
                        first_size=sizes[axis].text(),
                        other=name,
                        other_size=other[axis].text(),
                        period=period,
                        example=near,
                        values=(out.at(near), other[axis].at(near)),
                    )
                )

    def _check_multiple_sizes(
        self, planned: LayerPlan, in_sizes: tuple[Size, ...], multiple: int
    ) -> None:
        """A layer that takes only multiples of ``multiple``: say at which input sizes it does."""
        if multiple == 1:
            return
        for size in in_sizes:
            if size.is_fixed:
                continue
            n_reference = self.size[self._model_axis(size)]
            accepts = {
                n: size.at(n) % multiple == 0
                for n in range(1, 4 * n_reference + 1)
                if size.at(n) > 0
            }
            found = accepted_period(accepts, n_reference)
            if found is None:
                continue
            period, near = found
            self.size_notes.append(
                MultipleNote(
                    layer=planned.name,
                    axis=AXIS_NAMES[self.rank][self._model_axis(size)],
                    size=size.text(),
                    multiple=multiple,
                    period=period,
                    example=near,
                    value=size.at(near),
                )
            )

    def _model_axis(self, size: Size) -> int:
        return AXIS_NAMES[self.rank].index(size.axis) if size.axis in AXIS_NAMES[self.rank] else 0

    # -- shared by the planners of the layer definitions -------------------
    def window_padding(
        self, index: int, layer, shape: Shape, kernel, stride, dilation
    ) -> tuple[Pads, str]:
        rank = len(kernel)
        padding = layer.padding
        if padding == "valid":
            return ((0, 0),) * rank, "valid"
        if padding == "same":
            return tuple(
                S.same_padding(n, k, s, d)
                for n, k, s, d in zip(shape[1:], kernel, stride, dilation)
            ), "same"
        return self.explicit_pads(index, padding, rank), "explicit"

    def conv_formulas(
        self, shape: Shape, kernel, stride, dilation, pads: Pads, mode: str
    ) -> tuple[list[int], list[str]]:
        outs, formulas = [], []
        for n, k, s, d, (b, a) in zip(shape[1:], kernel, stride, dilation, pads):
            dk = S.effective_kernel(k, d)
            if mode == "same":
                out = S.ceil_div(n, s)
                formula = f"⌈{n} / {s}⌉ = {out}"
            else:
                out = S.conv_output_length(n, k, s, d, b, a)  # <= 0 is reported by check_positive
                formula = f"⌊({n} + {b + a} − {dk}) / {s}⌋ + 1 = {out}"
            if d != 1:
                formula += f"   (dilated kernel {d}·({k}−1)+1 = {dk})"
            outs.append(out)
            formulas.append(formula)
        return outs, formulas

    def sliding_window(self, index: int, layer, shape: Shape, rank: int):
        """Kernel, stride, dilation, per-side padding and output sizes of a conv-like layer."""
        self.require_spatial(index, layer.type, shape, rank)
        kernel = self.per_dim(index, layer.kernel_size, "kernel_size", rank)
        stride = self.per_dim(index, layer.stride, "stride", rank)
        dilation = self.per_dim(index, layer.dilation, "dilation", rank)
        pads, mode = self.window_padding(index, layer, shape, kernel, stride, dilation)
        outs, formulas = self.conv_formulas(shape, kernel, stride, dilation, pads, mode)
        self.check_positive(index, layer.type, outs, formulas)
        return dict(
            kernel_size=kernel,
            stride=stride,
            dilation=dilation,
            padding=pads,
            padding_mode=mode,
            size_formulas=tuple(formulas),
        ), outs

    @staticmethod
    def with_params(
        fields: dict, output_shape: Shape, params: list[ParamTensor], formula: str
    ) -> dict:
        formula += f" = {fmt_count(sum(p.size for p in params))}"
        return dict(fields, output_shape=output_shape, params=tuple(params), param_formula=formula)


class _LayerFailure(Exception):
    def __init__(self, problem: Problem):
        self.problem = problem


def resolve(spec, input_size: Iterable[int] | int | None = None) -> Plan:
    """Resolve a spec into a :class:`Plan`.

    Args:
        spec: a :class:`~cnnspec.spec.ModelSpec`, or anything :func:`cnnspec.load_spec` accepts.
        input_size: the spatial input size to compute the numbers at (e.g. ``(225, 225)``);
            one int means that size on every axis; it must equal the spec's size on every
            axis the spec fixes.  Default: the spec's
            size, its ``reference_size`` where it is open, else 224 on open axes.

    Returns:
        The plan: per layer its shapes (both layouts), per-side padding and parameters.

    Raises:
        SpecError: a shape collapses, ranks or channels do not fit, inputs are wrong --
            located at the layer, with the arithmetic.
    """
    from cnnspec.load.loader import load_spec, source_map_of

    spec = load_spec(spec)
    try:
        size = (input_size,) * spec.rank if isinstance(input_size, int) else input_size
        return _Resolver(spec, None if size is None else tuple(size)).run()
    except SpecError as error:
        source = source_map_of(spec)
        raise error.with_source(
            source.file if source else None, source.locate if source else None
        ) from None


#: The resolver as the layer planners see it (``fail``, ``per_dim``, ``sliding_window``...).
PlanContext = _Resolver
