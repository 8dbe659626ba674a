"""normalize: Keras Normalization, (x - mean) / max(sqrt(variance), 1e-7) per channel."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from cnnspec.engine.plan import LayerPlan, ParamTensor, fmt_count
from cnnspec.importers import keras as KI
from cnnspec.importers import torch as TI
from cnnspec.importers.common import refuse
from cnnspec.layers.registry import REGISTRY, LayerDefinition, WeightSlot, example, register
from cnnspec.spec.fields import LayerBase
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T

Finite = Annotated[float, Field(allow_inf_nan=False)]
Variance = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class Normalize(LayerBase):
    """Keras Normalization: (x - mean) / max(sqrt(variance), 1e-7), per channel. Not BatchNorm (sqrt(var + eps))."""

    type: Literal["normalize"]
    mean: Finite | Annotated[list[Finite], Field(min_length=1, max_length=4096)] | None = Field(
        default=None,
        description=(
            "Per-channel mean (one number, or one per channel). Given: a constant, no parameters "
            "(Keras Normalization(mean=..., variance=...)). Omitted (null): mean, variance and Keras' adapt "
            "count are non-trainable weights, 2*C + 1 parameters, as Keras counts them."
        ),
    )
    variance: Variance | Annotated[list[Variance], Field(min_length=1, max_length=4096)] | None = (
        Field(
            default=None,
            description="Per-channel variance; given together with mean, or omitted together.",
        )
    )

    @model_validator(mode="after")
    def _both_or_neither(self) -> Normalize:
        if (self.mean is None) != (self.variance is None):
            raise ValueError("give both mean and variance (constants), or neither (weights)")
        return self


def _values_text(value: Any, channels: int) -> str:
    """One value per channel (Keras needs mean and variance of the same shape)."""
    values = value if isinstance(value, list) else [value]
    if len(values) != channels:
        values = values * channels
    return "[" + ", ".join(T.float_text(v) for v in values) + "]"


@register
class NormalizeDefinition(LayerDefinition):
    """normalize: layers.Normalization; PyTorch the Normalize helper (buffers, or constants)."""

    model = Normalize
    family = "normalize"
    words = {"normalization": "normalize"}
    hint_text = (
        "normalize: Keras Normalization divides by max(sqrt(variance), 1e-7), not sqrt(variance + eps) like BatchNorm; "
        "after setting its weights Keras needs finalize_state(), or it keeps the old mean and variance."
    )
    examples = (
        example({"type": "normalize"}),
        example(
            {"type": "normalize", "mean": [0.485, 0.456, 0.406], "variance": [0.052, 0.05, 0.0]}
        ),
        example({"type": "normalize"}, channels=2, size=(6,)),
        example({"type": "normalize", "mean": 0.5, "variance": 4.0}, channels=2, size=(2, 3, 3)),
        example({"type": "normalize", "mean": [0.5], "variance": [1.0, 4.0, 0.25]}),
        example({"type": "global_avg_pool"}, {"type": "normalize"}, size=(3, 3)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        channels = shape[0]
        if layer.mean is not None:
            for field_name in ("mean", "variance"):
                value = getattr(layer, field_name)
                if isinstance(value, list) and len(value) not in (1, channels):
                    ctx.fail(
                        index,
                        f"{field_name} has {len(value)} values but the input has {channels} channels",
                        field_name,
                        hint=f"give one number, or exactly {channels}",
                    )
                if isinstance(value, list) and len(value) > 1 and len(shape) == 1:
                    ctx.fail(
                        index,
                        f"per-channel constant {field_name} needs a feature map; this input is flat {list(shape)}",
                        field_name,
                        hint="omit mean and variance (weights) to normalise flat features one by one",
                    )
            return dict(
                output_shape=shape, param_formula="no parameters (mean and variance are constants)"
            )
        params = (
            ParamTensor("mean", (channels,), trainable=False),
            ParamTensor("variance", (channels,), trainable=False),
            ParamTensor("count", (), trainable=False),
        )
        formula = f"2·{channels} + 1 non-trainable (mean, variance, Keras' adapt count) = {fmt_count(2 * channels + 1)}"
        return dict(output_shape=shape, params=params, param_formula=formula)

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        spec = layer.spec
        arguments = T.int_text(layer.input_shape[0])
        if spec.mean is not None:
            channels = layer.input_shape[0]
            arguments += f", mean={_values_text(spec.mean, channels)}, variance={_values_text(spec.variance, channels)}"
        code = T.single_module(layer, inputs, f"Normalize({arguments})")
        code.helpers.add("Normalize")
        return code

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        spec = layer.spec
        values = ""
        if spec.mean is not None:
            channels = layer.input_shape[0]
            values = f"mean={_values_text(spec.mean, channels)}, variance={_values_text(spec.variance, channels)}, "
        return K.single_layer(
            layer, ctx, f"layers.Normalization({values}name={K.quoted(layer.name)})"
        )

    def weights(self, layer: LayerPlan, flat_order: Any) -> list[WeightSlot]:
        if layer.spec.mean is not None:
            return []
        to_keras, to_torch = (lambda a: a), (lambda a: a)
        if flat_order is not None:
            import numpy as np

            inverse = np.argsort(flat_order)
            to_keras, to_torch = (lambda a: a[flat_order]), (lambda a: a[inverse])
        return [
            WeightSlot("mean", "mean", ("mean",), to_keras=to_keras, to_torch=to_torch),
            WeightSlot("variance", "variance", ("variance",), to_keras=to_keras, to_torch=to_torch),
            WeightSlot("count", "count", ("count",)),
        ]


@REGISTRY.attach("onnx", "normalize")
def normalize_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """(x - mean) / max(sqrt(variance), 1e-7): the spec's constants, or the mean and variance weights."""
    spec = layer.spec
    channels = layer.input_shape[0]
    if spec.mean is not None:
        mean_values = spec.mean if isinstance(spec.mean, list) else [spec.mean]
        variance_values = spec.variance if isinstance(spec.variance, list) else [spec.variance]
        mean = b.constant(b.temp(layer, "mean_values"), [float(v) for v in mean_values], "float32")
        variance = b.constant(
            b.temp(layer, "variance_values"), [float(v) for v in variance_values], "float32"
        )
    else:
        mean, variance = b.weight(layer, "mean"), b.weight(layer, "variance")
    floor = b.constant(b.temp(layer, "std_floor"), 1e-7, "float32")
    std = b.node(
        "Max", [b.node("Sqrt", [variance], b.temp(layer, "sqrt")), floor], b.temp(layer, "std_flat")
    )
    if channels > 1 or spec.mean is None:
        mean, std = O.per_channel(b, layer, mean, "mean"), O.per_channel(b, layer, std, "std")
    centred = b.node("Sub", [inputs[0], mean], b.temp(layer, "centred"))
    return b.node("Div", [centred, std], layer.name)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads("keras", "Normalization", by="normalize")
def read_keras_normalization(ctx, layer, cfg, inputs, shapes):
    """Keras Normalization: constants given in the config become fields; adapted statistics are weights."""
    import numpy as np

    axis = cfg.get("axis", -1)
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    if axis not in (-1, len(shapes[0]) - 1) or cfg.get("invert"):
        raise refuse(
            KI.FRAMEWORK,
            KI.where(layer),
            f"axis={axis}, invert={cfg.get('invert')}",
            "per-channel normalize",
        )
    if cfg.get("mean") is None:
        ctx.add(layer, "normalize", inputs)
        return
    channels = shapes[0][-1]
    mean, variance = (
        np.broadcast_to(np.asarray(cfg[k], dtype=float).reshape(-1), (channels,))
        for k in ("mean", "variance")
    )
    ctx.add(layer, "normalize", inputs, mean=mean.tolist(), variance=variance.tolist())


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_normalize(ctx, node, module):
    if "mean" not in module._non_persistent_buffers_set:  # statistics kept as weights
        ctx.add(node, node.args[:1], layer_type="normalize")
        return
    ctx.add(
        node,
        node.args[:1],
        layer_type="normalize",
        mean=TI.vector(module.mean),
        variance=TI.vector(module.variance),
    )


REGISTRY.reads("torch_module", "Normalize", by="normalize")(_torch_normalize)
