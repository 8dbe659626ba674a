"""``from_keras``: a functional or Sequential Keras 3 model (or a .keras / .h5 file) -> ModelSpec.

The functional graph is walked layer by layer (each layer called once, channels last).  Every
Keras layer class the catalog covers is claimed by its layer definition (``REGISTRY.reads("keras",
...)`` in ``cnnspec/layers/<type>.py``) with a reader ``(ctx, layer, cfg, inputs, shapes)`` that
turns its config into spec fields; raw ops (``x + y``) are claimed as ``"keras_op"`` with a
reader ``(ctx, op, node, inputs)``.  This module holds the walk and the helpers readers share.
Keras layer names are kept (a name that is not a valid spec name is
made valid and the original recorded in ``source``).  Exact rewrites, each listed in
``ImportResult.rewrites``:

* ``Reshape((1, 1, C))`` right after a global pooling -> the pooling with ``keepdims: true``
  (named after the Reshape, whose output it is);
* ``Dense`` on a channels-last feature map -> a 1x1 convolution (Keras' Dense contracts the last
  axis, which is the channel axis there);
* ``Activation('linear')`` -> ``identity`` (or nothing, where the catalog has no identity);
* a ``<name>_pad`` ``ZeroPadding`` feeding only a ``valid`` convolution ``<name>`` (cnnspec's own
  generated helper) -> the convolution's explicit padding;
* a layer's activation with a parameter (``activation="leaky_relu"``) -> the layer, renamed
  ``<name>_linear``, then the activation as a layer named ``<name>``;
* an augmentation or noise layer (active only in training) -> ``identity``;
* a nested model called once (a Sequential, or a functional base under a new head) -> its layers.

Each layer's call is the one in the model's own graph (:func:`calls_in_graph`).  Anything else --
``Lambda``, custom layers, layers called twice in the model, nested models called twice or
without a graph, channels-first data --
is refused with the layer's name and what is supported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnspec.importers.common import (
    ImportResult,
    SpecBuilder,
    compact_padding,
    flatten_orders_differ,
    inline_activations,
    refuse,
)

FRAMEWORK = "keras layer"


class _Context:
    """State of one import: the builder, tensor -> spec name, consumers of each tensor."""

    def __init__(self, model):
        self.builder = SpecBuilder("keras")
        self.names: dict[int, str] = {}
        self.shapes: dict[str, tuple] = {}
        self.consumers: dict[int, int] = {}
        self.model = model
        self.node = None
        self.nodes: dict[int, Any] = {}  # layer -> the call of it in the graph being imported
        self.pending_pads: dict[str, Any] = {}  # consumer name -> padding read from its helper
        self.activation_after: str | None = None  # set by inline_activation, for the walk
        # a Permute moving the channels first, read by a Flatten alone -> the Permute's name
        self.channels_first: dict[int, str] = {}

    def output(self, layer):
        """The layer's output tensor in the graph being imported."""
        return self.nodes[id(layer)].output_tensors[0]

    def readers(self, tensor) -> list:
        """The operations (layers and raw ops) that read ``tensor`` in the graph being imported."""
        return [
            call.operation
            for call in self.nodes.values()
            if any(read is tensor for read in call.input_tensors)
        ]

    def add(
        self,
        layer,
        layer_type: str,
        inputs: list[str],
        *,
        source: str | None = None,
        name: str | None = None,
        **fields,
    ) -> str:
        return self.builder.add(name or layer.name, layer_type, inputs, source=source, **fields)


def where(layer) -> str:
    """How a refusal names a Keras layer: ``'conv1' (Conv2D)``."""
    return f"'{layer.name}' ({type(layer).__name__})"


# cnnspec's own registered activation functions (generated Keras code): config name -> spec activation.
_REGISTERED = {"cnnspec>gelu_erf": "gelu", "cnnspec>gelu_tanh": "gelu_tanh"}


def registered_activation(value):
    """cnnspec's own registered activation functions (generated Keras code) by spec name."""
    if isinstance(value, dict) and value.get("config") in _REGISTERED:
        return _REGISTERED[value["config"]]
    return value


def inline_activation(ctx, layer, value, what: str = "activation") -> str | None:
    """The spec type of a layer's ``activation`` (None for linear); refused if it has none.

    An activation with a parameter (Keras' ``leaky_relu``, ``elu``) has no inline form in the
    spec: None is returned and the walk adds it as a layer of its own after this one
    (:func:`_activation_as_a_layer`).
    """
    value = registered_activation(value)
    if value in (None, "linear"):
        return None
    types = activation_types()
    kind = types.get(value) if isinstance(value, str) else None
    if kind is not None and kind not in inline_activations():
        ctx.activation_after = value
        return None
    if kind is None:
        raise refuse(
            FRAMEWORK,
            where(layer),
            f"{what} {value!r} is not an activation cnnspec knows",
            "activations: " + ", ".join(sorted(types)),
        )
    return kind


def activation_types() -> dict[str, str]:
    """Keras activation name (``"swish"``) -> spec type (``silu``), as the activation definitions
    claim them (``REGISTRY.reads("keras_activation", ...)``)."""
    return {name: claim.reader(name)["type"] for name, claim in _claims("keras_activation").items()}


def activation_layer(value: str) -> dict[str, Any]:
    """The spec layer (``type`` and fields) a Keras activation name stands for, as claimed."""
    return _claims("keras_activation")[value].reader(value)


def channels_last(layer, cfg) -> None:
    """Refuse a layer configured channels-first."""
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise refuse(
            FRAMEWORK,
            where(layer),
            "data_format='channels_first' is not supported",
            "cnnspec imports channels-last Keras models (the Keras default)",
        )


def same_or_valid(layer, value: str) -> str:
    """A Keras ``padding`` argument, refused unless 'valid' or 'same'."""
    if value not in ("valid", "same"):
        raise refuse(
            FRAMEWORK,
            where(layer),
            f"padding={value!r} is not supported",
            "use 'valid', 'same' or ZeroPadding",
        )
    return value


def pass_through(ctx, layer, cfg, inputs, shapes, what: str | None = None):
    """An identity layer, or nothing where the catalog has no identity type (a rewrite)."""
    from cnnspec.spec.models import layer_types

    if "identity" in layer_types():
        ctx.add(layer, "identity", inputs)
        return
    ctx.builder.rewrite(layer.name, what or type(layer).__name__, "removed (it computes nothing)")
    ctx.names[id(ctx.output(layer))] = inputs[0]


def _load(model_or_path):
    import keras

    if isinstance(model_or_path, keras.Model):
        return model_or_path
    path = Path(model_or_path)
    if not path.is_file():
        raise refuse("keras", f"file {path}", "not found")
    if path.suffix not in (".keras", ".h5"):
        raise refuse("keras", f"file {path}", "is not a .keras or .h5 model file")
    try:  # safe_mode refuses Lambda layers' pickled code
        return keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - keras raises many types for unreadable files
        raise refuse(
            "keras", f"file {path}", f"cannot be loaded safely: {type(error).__name__}: {error}"
        ) from None


def _tensor_shape(tensor) -> tuple:
    return tuple(tensor.shape)


def calls_in_graph(model) -> dict[int, list]:
    """Each operation's calls (Keras nodes) in ``model``'s own graph, by ``id(operation)``.

    An operation keeps every call ever made of it, in any graph: a Sequential read from a file
    holds the calls Keras made while rebuilding it, and a layer tried on another input holds that
    call.  The model's calls are the ones on its paths from its outputs back to its inputs.
    """
    calls: dict[int, list] = {}
    for operation, node in _calls_in_order(model):
        calls.setdefault(id(operation), []).append(node)
    return calls


def _calls_in_order(model) -> list[tuple[Any, Any]]:
    """The (operation, call) pairs on ``model``'s paths from its outputs back to its inputs, each
    after the calls it reads (its InputLayer's included)."""
    order: list[tuple[Any, Any]] = []
    finished: set[tuple[int, int]] = set()
    pending = [(tensor, False) for tensor in model.outputs]
    while pending:
        tensor, inputs_done = pending.pop()
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            continue
        operation, index, _ = history
        key = (id(operation), index)
        if key in finished:
            continue
        node = operation._inbound_nodes[index]
        if inputs_done:
            finished.add(key)
            order.append((operation, node))
            continue
        pending.append((tensor, True))
        pending.extend((source, False) for source in node.input_tensors)
    return order


def operations_of(model) -> list:
    """A model's layers, and the raw ops (``x + 3.0``, ``a * b``) Keras 3 records in a functional
    graph, without its InputLayer."""
    return [
        operation
        for operation in getattr(model, "operations", model.layers)
        if type(operation).__name__ != "InputLayer"
    ]


def single_calls(model) -> dict[int, Any]:
    """The operations called exactly once in ``model``'s graph -> that call (see :func:`calls_in_graph`)."""
    return {key: found[0] for key, found in calls_in_graph(model).items() if len(found) == 1}


def input_reshape_hint(target: tuple) -> str:
    """What to do instead of a Reshape of the model's input: the spec's input is the feature map."""
    return (
        f"build the model on keras.Input({target}) without the Reshape, and reshape the data "
        f"instead (x.reshape(-1, {', '.join(map(str, target))}))"
    )


def _input_reshape(model) -> tuple | None:
    """The target shape of a ``Reshape`` that the model applies to its input first, if any."""
    source = model.inputs[0]
    readers = [
        operation
        for operation, node in _calls_in_order(model)
        if any(tensor is source for tensor in node.input_tensors)
    ]
    if len(readers) == 1 and hasattr(readers[0], "target_shape"):
        return tuple(readers[0].target_shape)
    return None


def _check_graph(model) -> dict[int, list]:
    """Refuse a model cnnspec cannot read as one graph; returns its :func:`calls_in_graph`."""
    import keras

    if not getattr(model, "inputs", None):
        if model.built and not isinstance(model, keras.Sequential):
            raise refuse(
                "keras",
                f"model '{model.name}' ({type(model).__name__})",
                "is a subclassed keras.Model: its call() is Python code, with no graph of layers to read",
                "rebuild it functionally: inputs = keras.Input(shape); outputs = ...; "
                "keras.Model(inputs, outputs)",
            )
        raise refuse(
            "keras",
            f"model '{model.name}'",
            "has no known input shape",
            "build it with keras.Input(shape=...) first",
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise refuse(
            "keras",
            f"model '{model.name}'",
            f"has {len(model.inputs)} inputs and {len(model.outputs)} outputs; cnnspec imports one of each",
        )
    graph_calls = calls_in_graph(model)
    for layer in model.layers:
        if isinstance(layer, keras.Model) and (
            len(graph_calls.get(id(layer), ())) != 1 or _inner_calls(layer) is None
        ):
            raise refuse(
                FRAMEWORK,
                where(layer),
                "is a nested model called more than once, or without a graph of one input and one "
                "output",
                "rebuild the outer model on the nested model's layers (functional API), then import",
            )
    return graph_calls


def import_keras(model_or_path) -> ImportResult:
    """Import a Keras model; returns the spec and the rewrites made (see :func:`from_keras`)."""
    from cnnspec.verifier.onnx_export import _prepare_environment

    _prepare_environment()
    import keras

    model = _load(model_or_path)
    graph_calls = _check_graph(model)
    ctx = _Context(model)
    input_tensor = model.inputs[0]
    input_shape = _tensor_shape(input_tensor)[1:]
    if input_shape[-1:] == (None,) or len(input_shape) not in (2, 3, 4):
        reshaped = _input_reshape(model)
        raise refuse(
            "keras",
            f"model '{model.name}'",
            f"input shape {input_shape} (batch excluded)"
            + (" is a flat vector, not a feature map" if len(input_shape) == 1 else "")
            + (f", reshaped to {reshaped} by its first layer" if reshaped else ""),
            (
                input_reshape_hint(reshaped)
                if reshaped
                else "cnnspec needs a channels-last input with known channels: (L, C), (H, W, C) "
                "or (D, H, W, C); spatial sizes may be None (any size)"
            ),
        )
    ctx.names[id(input_tensor)] = "input"
    ctx.shapes["input"] = input_shape

    layers = operations_of(model)
    aliases: dict[
        int, Any
    ] = {}  # a nested model's inner input / outer output tensor -> the tensor it is
    nodes = ctx.nodes
    nodes.update((key, found[0]) for key, found in graph_calls.items() if len(found) == 1)
    layers = _inline_nested(layers, aliases, nodes)
    seen: set[str] = set()
    for layer in layers:
        if layer.name in seen:  # weights are found by name
            raise refuse(
                FRAMEWORK,
                where(layer),
                "has the name of another layer of the model (one inside a nested model, one outside)",
                "give the layers distinct names",
            )
        seen.add(layer.name)
    for layer in layers:
        if id(layer) not in nodes:
            calls = graph_calls.get(id(layer), layer._inbound_nodes)
            if len(calls) != 1:
                raise refuse(
                    FRAMEWORK,
                    where(layer),
                    f"is called {len(calls)} times in the model (a shared layer)",
                    "cnnspec layers have one output each; give each call its own layer",
                )
            nodes[id(layer)] = calls[0]
        for tensor in nodes[id(layer)].input_tensors:
            ctx.consumers[id(tensor)] = ctx.consumers.get(id(tensor), 0) + 1
    readers = {name: claim.reader for name, claim in _claims("keras").items()}
    operations = {name: claim.reader for name, claim in _claims("keras_op").items()}
    for layer in layers:
        node = nodes[id(layer)]
        try:
            inputs = [ctx.names[id(aliases.get(id(t), t))] for t in node.input_tensors]
        except KeyError:
            raise refuse(
                FRAMEWORK,
                where(layer),
                "reads a tensor that is not the output of a layer (e.g. a raw TensorFlow op or a constant)",
                "build the model from Keras layers only",
            ) from None
        shapes = [_tensor_shape(t) for t in node.input_tensors]
        if not isinstance(layer, keras.layers.Layer):
            operation = operations.get(type(layer).__name__)
            if operation is None:
                raise refuse(
                    FRAMEWORK,
                    f"'{layer.name}' ({type(layer).__name__} op)",
                    "is a raw op cnnspec does not read",
                    "+, -, * on tensors or by a number",
                )
            count = len(ctx.builder.layers)
            operation(ctx, layer, node, inputs)
            output = ctx.output(layer)
            if id(output) not in ctx.names:  # an op that computes nothing names its input
                ctx.names[id(output)] = ctx.builder.layers[-1]["name"]
            if len(ctx.builder.layers) > count:
                ctx.shapes[ctx.builder.layers[-1]["name"]] = _tensor_shape(output)[1:]
            continue
        cfg = layer.get_config()
        handler = readers.get(type(layer).__name__)
        if handler is None:
            from cnnspec.layers.pixel_shuffle import keras_rearrangement

            ctx.node = node
            if keras_rearrangement(ctx, layer, inputs, shapes):
                output = ctx.output(layer)
                ctx.names[id(output)] = ctx.builder.layers[-1]["name"]
                ctx.shapes[ctx.builder.layers[-1]["name"]] = _tensor_shape(output)[1:]
                continue
            raise unsupported(layer)
        count = len(ctx.builder.layers)
        ctx.node = node
        handler(ctx, layer, cfg, inputs, shapes)
        output = ctx.output(layer)
        if id(output) not in ctx.names:
            ctx.names[id(output)] = ctx.builder.layers[-1]["name"]
        if len(ctx.builder.layers) > count:
            ctx.shapes[ctx.builder.layers[-1]["name"]] = _tensor_shape(output)[1:]
        if layer.name in ctx.pending_pads:
            ctx.builder.layers[-1].update(ctx.pending_pads.pop(layer.name))
        if ctx.activation_after is not None:
            _activation_as_a_layer(ctx, layer, output)
    channels, size = input_shape[-1], list(input_shape[:-1])
    ctx.builder.keep_flatten_order(
        {
            layer["name"]: flatten_orders_differ(ctx.shapes[ctx.builder.inputs_of(layer)[0]])
            for layer in ctx.builder.layers
            if layer["type"] == "flatten"
            and len(ctx.shapes.get(ctx.builder.inputs_of(layer)[0], ())) > 1
        }
    )
    spec = ctx.builder.finish(model.name, channels, size)
    return ImportResult(
        spec=spec, rewrites=ctx.builder.rewrites, framework="keras", details={"model": model}
    )


def _activation_as_a_layer(ctx, layer, output) -> None:
    """A layer's activation with a parameter becomes a layer of its own, after it.

    The activation layer takes the Keras layer's name, since its output is the Keras layer's
    output (what verify reads there); the layer before it is renamed ``<name>_linear``.
    """
    value, ctx.activation_after = ctx.activation_after, None
    before = ctx.builder.rename_last(f"{layer.name}_linear")
    ctx.shapes[before] = _tensor_shape(output)[1:]
    fields = activation_layer(value)
    ctx.add(layer, fields.pop("type"), [before], **fields)
    after = ctx.builder.layers[-1]
    ctx.names[id(output)] = after["name"]
    ctx.shapes[after["name"]] = _tensor_shape(output)[1:]
    ctx.builder.rewrite(
        layer.name,
        f"{type(layer).__name__}(activation={value!r})",
        f"'{before}' without activation, then a {after['type']} layer '{after['name']}' "
        "(the spec's inline activations have no parameters)",
    )


def _claims(source: str) -> dict:
    from cnnspec.layers import REGISTRY

    return REGISTRY.claims(source)


def absorb_helper_pad(ctx, layer, padding, value: float, inputs, **fields) -> bool:
    """cnnspec's generated ``<name>_pad`` helper before the valid layer ``<name>`` it serves (zeros
    before a conv or an average pool, -inf before a max pool) becomes that layer's padding.

    ``padding`` may be ``"same"`` (the run-time SamePadding helper of an open size); ``fields``
    are further fields the helper stands for (``ceil_mode``).

    Pad readers call this first; True means the helper was absorbed (it adds no layer).  Which
    consumers take which value is claimed with ``absorbs_padding`` (see ``Registry.reads``).
    """
    if not layer.name.endswith("_pad"):
        return False
    target = layer.name[: -len("_pad")]
    try:
        consumer = ctx.model.get_layer(target)
    except ValueError:
        return False
    claim = _claims("keras").get(type(consumer).__name__)
    if (
        claim is not None
        and claim.absorbs_padding == value
        and consumer.get_config()["padding"] == "valid"
        and (padding == "same" or not _is_same(ctx.node, consumer, padding))
        and id(consumer) in ctx.nodes
        and ctx.nodes[id(consumer)].input_tensors[0] is ctx.output(layer)
    ):
        if padding != "same":
            padding = compact_padding([padding] if isinstance(padding[0], int) else padding)
        ctx.pending_pads[target] = {"padding": padding, **fields}
        ctx.names[id(ctx.output(layer))] = inputs[0]
        return True
    return False


def _is_same(pad_node, consumer, padding) -> bool:
    """Whether ``padding`` is what Keras' padding="same" applies for ``consumer``: cnnspec never writes a pad
    helper then (it writes padding="same"), so such a ``<name>_pad`` is a layer of the model (Keras'
    MobileNetV3 and EfficientNet name theirs that way too)."""
    from cnnspec.engine.shapes import same_padding

    cfg = consumer.get_config()
    if "kernel_size" not in cfg or "subsample" in cfg:  # cnnspec's PortableConv never pads "same"
        return False
    sizes = _tensor_shape(pad_node.input_tensors[0])[1:-1]
    if None in sizes:  # fixed amounts are 'same' at some sizes only: they stay what they are
        return False
    rank = len(sizes)
    pairs = (
        [padding] if isinstance(padding[0], int) and len(padding) == 2 and rank == 1 else padding
    )
    pairs = [(p, p) if isinstance(p, int) else tuple(p) for p in pairs]
    if len(pairs) != rank:
        return False
    strides = [s * t for s, t in zip(cfg["strides"], cfg.get("subsample") or (1,) * rank)]
    if (
        max(strides) > 1 and max(cfg["dilation_rate"]) > 1
    ):  # cnnspec pads explicitly then (Keras refuses same)
        return False
    if len(set(strides)) > 1:  # and with unequal strides (see targets.keras.code.is_keras_same)
        return False
    same = [
        same_padding(n, k, s, d)
        for n, k, s, d in zip(sizes, cfg["kernel_size"], strides, cfg["dilation_rate"])
    ]
    return [tuple(p) for p in pairs] == [tuple(p) for p in same]


def _inline_nested(layers, aliases, nodes) -> list:
    """A nested model called once -- a Sequential (Keras ConvNeXt's stem) or a functional model
    (a keras.applications base under a new head) -- is its layers, in the outer graph.

    Its layers' calls are read from the nested model's own graph (``nodes`` records them): a
    model loaded from a file may hold an earlier call of an inner layer, made while Keras
    rebuilt it.  ``aliases`` take its input to the tensor it is called on, and the call's output
    to its own output.
    """
    import keras

    expanded = []
    for layer in layers:
        outer = nodes.get(id(layer))
        if outer is None and len(layer._inbound_nodes) == 1:
            outer = layer._inbound_nodes[0]
        calls = _inner_calls(layer) if isinstance(layer, keras.Model) else None
        if outer is None or calls is None or len(outer.input_tensors) != 1:
            expanded.append(layer)
            continue
        aliases[id(layer.inputs[0])] = outer.input_tensors[0]
        aliases[id(outer.output_tensors[0])] = layer.outputs[0]
        nodes.update((id(sub), node) for sub, node in calls)
        expanded.extend(_inline_nested([sub for sub, _ in calls], aliases, nodes))
    return expanded


def flat_model(model):
    """``model`` with every nested model called once replaced by its layers -- the same layer
    objects, so the same weights -- in one graph, where each inner layer's output can be read
    (a keras.applications base under a new head); ``model`` itself when nothing is nested."""
    import keras

    if not any(isinstance(layer, keras.Model) for layer in model.layers):
        return model
    aliases: dict[int, Any] = {}
    nodes = single_calls(model)
    operations = _inline_nested(operations_of(model), aliases, nodes)
    if any(id(operation) not in nodes for operation in operations):
        return model  # a layer called twice: there is no single graph to flatten into
    original_input = model.inputs[0]
    inputs = keras.Input(tuple(original_input.shape[1:]), dtype=original_input.dtype)
    values: dict[int, Any] = {id(original_input): inputs}

    def value(tensor):
        while id(tensor) not in values and id(tensor) in aliases:
            tensor = aliases[id(tensor)]
        return values[id(tensor)]

    for operation in operations:
        node = nodes[id(operation)]
        known = {id(t): value(t) for t in node.input_tensors}
        args, kwargs = node.arguments.fill_in(known)
        outputs = keras.tree.flatten(operation(*args, **kwargs))
        values.update((id(t), new) for t, new in zip(node.output_tensors, outputs))
    return keras.Model(inputs, value(model.outputs[0]), name=model.name)


def _inner_calls(model) -> list | None:
    """The (operation, call) pairs of a model's own graph, each after the calls it reads; None
    where it has no graph of one input and one output (a subclassed model)."""
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if not inputs or not outputs or len(inputs) != 1 or len(outputs) != 1:
        return None
    calls = [(operation, node) for operation, node in _calls_in_order(model) if node.input_tensors]
    return calls or None


def unsupported(layer):
    """The refusal for a layer class nothing claims (Lambda layers get their own words)."""
    name = type(layer).__name__
    if name in ("Lambda", "TFOpLambda"):
        return refuse(
            FRAMEWORK,
            where(layer),
            "is a Lambda layer: its Python code cannot be read as a spec",
            "replace it with built-in layers; supported: " + ", ".join(sorted(_claims("keras"))),
        )
    return refuse(
        FRAMEWORK,
        where(layer),
        f"layer class {name} is not supported",
        "supported Keras layers: " + ", ".join(sorted(_claims("keras"))),
    )


def from_keras(model_or_path):
    """Import a Keras 3 model as a cnnspec ModelSpec.

    Args:
        model_or_path: a functional or Sequential ``keras.Model`` with a fixed input shape, or a
            ``.keras`` / ``.h5`` file (loaded with ``safe_mode=True``).

    Returns:
        The :class:`~cnnspec.spec.models.ModelSpec`; Keras layer names are kept.

    Raises:
        UnsupportedModel: a layer no cnnspec type expresses exactly (the message names it and
            lists what is supported).
    """
    return import_keras(model_or_path).spec


# ----------------------------------------------------------------------------------------------
# Weights of the original Keras model, in the neutral (PyTorch) layout of importers.origin
# ----------------------------------------------------------------------------------------------


def _numpy(variable):
    import keras
    import numpy as np

    return np.array(keras.ops.convert_to_numpy(variable))


def _kernel_to_torch(kernel):
    """(*k, B, A) -> (A, B, *k): conv (*k, I/g, O) and transposed conv (*k, O, I) alike."""
    import numpy as np

    return np.transpose(kernel, (kernel.ndim - 1, kernel.ndim - 2) + tuple(range(kernel.ndim - 2)))


def _depthwise_to_torch(kernel):
    """(kh, kw, C, m) -> (C*m, 1, kh, kw): torch output channel c*m + j is Keras (c, j)."""
    import numpy as np

    kh, kw, channels, multiplier = kernel.shape
    return np.transpose(kernel, (2, 3, 0, 1)).reshape(channels * multiplier, 1, kh, kw)


def original_layout(model, plan):
    """``plan`` with each flat value's pieces (``flat_segments``) as the original Keras ``model``
    lays them out, for the proof to compare its outputs in order; ``plan`` itself when they are
    the spec's Keras layout (no Permute + Flatten)."""
    import dataclasses

    from cnnspec.layers.flatten import keras_channels_first_flattens

    by_name = layers_by_name(model)
    channels_first = keras_channels_first_flattens(by_name, plan)
    if not channels_first:
        return plan
    layers = tuple(
        dataclasses.replace(
            layer, flat_segments=_original_segments(plan, layer.name, channels_first)
        )
        if layer.flat_segments
        else layer
        for layer in plan.layers
    )
    return dataclasses.replace(plan, layers=layers, _by_name={})


def layers_by_name(model) -> dict:
    """A model's layers by name, those of nested models included (as the importer reads them)."""
    return {layer.name: layer for layer in _inline_nested(model.layers, {}, single_calls(model))}


def _original_segments(plan, name: str, channels_first: set[str]) -> tuple:
    """The pieces of a flat value as the original Keras model lays them out: the plan's, except
    that a ``Permute`` to channels first before a Flatten (a hand port of PyTorch's flatten) made
    its piece in PyTorch's order already."""
    layer = plan.layer(name)
    if not channels_first:
        return layer.flat_segments
    if layer.type == "flatten" and len(layer.input_shape) > 1:
        return (layer.output_shape,) if name in channels_first else layer.flat_segments
    if layer.type == "concat":
        return tuple(
            piece
            for source in layer.inputs
            for piece in _original_segments(plan, source, channels_first)
        )
    if len(layer.inputs) == 1 and layer.inputs[0] != "input" and layer.family != "dense":
        before = plan.layer(layer.inputs[0])
        if before.flat_segments == layer.flat_segments:  # dropout, batch_norm: the same layout
            return _original_segments(plan, before.name, channels_first)
    return layer.flat_segments


def keras_tensors(model, plan) -> dict:
    """Every weighted spec layer's tensors read from a Keras model, converted to PyTorch's layout.

    Layers are found by ``source`` (or name).  Flat features are laid out channels-last by Keras'
    Flatten; a dense kernel's rows (and BatchNorm / PReLU vectors on flat features) are put in
    the spec's channels-first order.
    """
    import numpy as np

    from cnnspec.importers.origin import WEIGHTED_FAMILIES, OriginalWeightError
    from cnnspec.layers.flatten import keras_channels_first_flattens
    from cnnspec.weights.transfer import flat_permutation

    by_name = layers_by_name(model)
    channels_first = keras_channels_first_flattens(by_name, plan)
    tensors: dict = {}
    for layer_plan in plan.layers:
        if layer_plan.family not in WEIGHTED_FAMILIES:
            continue
        key = layer_plan.spec.source or layer_plan.name
        layer = by_name.get(key)
        if layer is None:
            raise OriginalWeightError(
                f"layer '{layer_plan.name}': the keras model has no layer '{key}'"
            )
        family = layer_plan.family
        to_torch_order = None
        if len(layer_plan.input_shape) == 1:
            source = layer_plan.inputs[0]
            segments = (
                _original_segments(plan, source, channels_first)
                if source != "input"
                else (layer_plan.input_shape,)
            )
            inverse = np.argsort(flat_permutation(segments))
            to_torch_order = lambda a, inverse=inverse: a[inverse]
        values: dict[str, np.ndarray] = {}
        bias = getattr(layer, "bias", None) if getattr(layer, "use_bias", False) else None
        rewritten_dense = getattr(layer, "units", None) is not None
        if family in ("conv", "conv_transpose") and rewritten_dense:  # the 1x1-conv rewrite
            kernel = _numpy(layer.kernel).T
            values["kernel"] = kernel.reshape(kernel.shape + (1,) * layer_plan.spatial_rank)
        elif family in ("conv", "conv_transpose", "channel_conv"):
            values["kernel"] = _kernel_to_torch(_numpy(layer.kernel))
        elif family == "depthwise_conv":
            values["depthwise_kernel"] = _depthwise_to_torch(_numpy(layer.kernel))
        elif family == "separable_conv":
            values["depthwise_kernel"] = _depthwise_to_torch(_numpy(layer.depthwise_kernel))
            values["pointwise_kernel"] = _kernel_to_torch(_numpy(layer.pointwise_kernel))
        elif family == "dense":
            kernel = _numpy(layer.kernel)
            values["kernel"] = np.ascontiguousarray(
                (kernel if to_torch_order is None else to_torch_order(kernel)).T
            )
        elif family in ("batch_norm", "layer_norm", "group_norm", "layer_scale", "normalize"):
            names = {
                "batch_norm": ("gamma", "beta", "moving_mean", "moving_variance"),
                "normalize": ("mean", "variance", "count"),
            }.get(family, ("gamma", "beta"))
            for tensor in names:
                variable = (
                    getattr(layer, tensor, None)
                    if any(p.name == tensor for p in layer_plan.params)
                    else None
                )
                if variable is None or not hasattr(variable, "shape"):
                    continue
                vector = _numpy(variable)
                if family == "normalize" and tensor != "count":
                    vector = vector.reshape(-1)
                values[tensor] = (
                    vector if to_torch_order is None or vector.ndim != 1 else to_torch_order(vector)
                )
        elif family == "prelu":
            alpha = _numpy(layer.alpha).reshape(-1)
            values["alpha"] = (
                alpha if to_torch_order is None or alpha.size == 1 else to_torch_order(alpha)
            )
        if bias is not None:
            values["bias"] = _numpy(bias)
        tensors[layer_plan.name] = values
    return tensors
