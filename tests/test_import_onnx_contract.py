"""from_onnx over the layer registry: every example of every registered type, built as a torch model
from its spec and exported by torch.onnx itself (legacy exporter, opset 18), imports back; the model
built from the imported spec, given the file's initializers, computes what onnxruntime computes on the
file.  The reference is onnxruntime running the exported file, never cnnspec.

The examples that do not import are pinned in ``NOT_IMPORTED`` (the list may only shrink): they are
layers PyTorch has no exportable op for, which cnnspec's generated PyTorch writes as generic
arithmetic (uneven adaptive pools as a sum of windows, nearest-exact and 1-D bicubic resizes as
index and matrix products); a hand-written model cannot export them either.  A pinned example must
still be refused with a located error, never imported as a wrong model.

The same over Keras (slow): each example's Keras model converted by tf2onnx, compared in Keras'
layout; pinned in ``NOT_IMPORTED_TF2ONNX``.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import cnnspec  # noqa: E402
from cnnspec.engine.plan import resolve  # noqa: E402
from cnnspec.importers.common import UnsupportedModel  # noqa: E402
from cnnspec.importers.onnx import import_onnx  # noqa: E402
from cnnspec.layers import REGISTRY  # noqa: E402
from cnnspec.targets.base import get_target  # noqa: E402
from cnnspec.verifier.onnx_export import quiet_warnings  # noqa: E402
from cnnspec.weights.transfer import randomize  # noqa: E402

#: Examples (type-number) whose torch.onnx export is generic arithmetic, not a layer pattern.
NOT_IMPORTED = {
    "adaptive_avg_pool-0",
    "adaptive_max_pool-1",
    "adaptive_avg_pool-4",
    "adaptive_max_pool-5",
    "adaptive_avg_pool-6",
    "resize-3",
    "resize-6",
    "resize-8",
}

#: What a type's export reads back as when not as itself (exact: the computation is the same).
RENDERED_AS = {
    "separable_conv2d": {"depthwise_conv2d"},  # PyTorch's two convolutions
    "average": {"scale"},  # (a + b) / 2: add, then * 0.5
    "normalize": {"rescale", "batch_norm"},  # (x - mean) / sqrt(variance) with constants
    "rescale": {"scale", "batch_norm"},
    "adaptive_avg_pool": {"avg_pool2d"},  # an even split is a plain pool
    "adaptive_max_pool": {"max_pool2d"},
    "pad1d": {"zero_pad1d"},  # constant 0
    "resize": {"upsample"},  # an integer nearest factor
}

#: The identity at inference: the exporter drops them (an identity layer ends a graph that ends in one).
VANISH = {"identity", "dropout", "spatial_dropout", "stochastic_depth"}

CASES = [
    pytest.param(
        definition, number, id=f"{definition.examples[number].layers[-1]['type']}-{number}"
    )
    for definition in REGISTRY.definitions()
    for number in range(len(definition.examples))
]


def exported(plan):
    model = get_target("torch").build(plan)[0]
    randomize(model, 1)
    buffer = io.BytesIO()
    with quiet_warnings(), torch.no_grad():
        torch.onnx.export(
            model,
            (torch.zeros(2, *plan.input_shape),),
            buffer,
            dynamo=False,
            opset_version=18,
            input_names=["input"],
        )
    return onnx.load_from_string(buffer.getvalue())


@pytest.mark.frameworks
@pytest.mark.onnx
@pytest.mark.parametrize(("definition", "number"), CASES)
def test_torch_onnx_export_of_every_example_imports(definition, number):
    example = definition.examples[number]
    case = f"{example.layers[-1]['type']}-{number}"
    plan = resolve(example.spec())
    proto = exported(plan)
    if case in NOT_IMPORTED:
        with pytest.raises(UnsupportedModel):  # a located refusal, never a wrong model
            import_onnx(proto)
        return
    spec = import_onnx(proto).spec
    x = (np.random.default_rng(number).normal(size=(2, *plan.input_shape)) * 2).astype(np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    model = cnnspec.build(spec, "torch").eval()
    cnnspec.transfer_weights(proto, model, spec)
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    assert got.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max()))
    assert float(np.abs(got - expected).max()) <= 1e-4 * scale, [
        layer.type for layer in spec.layers
    ]
    layer_type, types = example.layers[-1]["type"], {layer.type for layer in spec.layers}
    assert layer_type in types | VANISH or RENDERED_AS.get(layer_type, set()) & types, sorted(types)


#: Examples whose Keras model tf2onnx writes as generic arithmetic: cnnspec's own Keras helpers for what
#: Keras has no layer for (Resize modes, uneven adaptive pools, reflect/replicate padding: gathers and
#: matrix products), Keras' Conv1DTranspose (its
#: output size computed at run time) and a 3-D 'same' average pool (a division by a map of counts).
NOT_IMPORTED_TF2ONNX = {
    "conv_transpose1d-0",
    "avg_pool3d-4",
    "adaptive_avg_pool-0",
    "adaptive_max_pool-1",
    "adaptive_avg_pool-4",
    "adaptive_max_pool-5",
    "adaptive_avg_pool-6",
    "pad2d-1",
    "pad3d-5",
    *(f"resize-{number}" for number in (1, 2, 4, 5, 6, 7, 8, 9)),
}


@pytest.mark.slow
@pytest.mark.frameworks
@pytest.mark.onnx
@pytest.mark.parametrize(("definition", "number"), CASES)
def test_tf2onnx_export_of_every_example_imports(definition, number):
    """The same over Keras: the example's Keras model, converted by tf2onnx (its default optimisers)."""
    from cnnspec.verifier.onnx_export import import_frameworks
    from cnnspec.weights.transfer import flat_permutation

    import_frameworks()
    import tensorflow as tf
    import tf2onnx

    example = definition.examples[number]
    case = f"{example.layers[-1]['type']}-{number}"
    plan = resolve(example.spec())
    keras_model = cnnspec.build(example.spec(), "keras")
    randomize(keras_model, 1)
    shape_last = (*plan.input_shape[1:], plan.input_shape[0])
    signature = (tf.TensorSpec((None, *shape_last), tf.float32, name="input"),)
    with quiet_warnings():
        proto, _ = tf2onnx.convert.from_keras(keras_model, input_signature=signature, opset=18)
    if case in NOT_IMPORTED_TF2ONNX:
        with pytest.raises(UnsupportedModel):
            import_onnx(proto)
        return
    spec = import_onnx(proto).spec
    x = (np.random.default_rng(number).normal(size=(2, *plan.input_shape)) * 2).astype(np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input": np.ascontiguousarray(np.moveaxis(x, 1, -1))})[0]
    model = cnnspec.build(spec, "torch").eval()
    cnnspec.transfer_weights(proto, model, spec)
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    last = resolve(spec).layers[-1]
    if got.ndim > 2:
        got = np.moveaxis(got, 1, -1)
    elif last.flat_segments is not None:
        got = got[:, flat_permutation(last.flat_segments)]  # the spec's flat order -> Keras'
    assert got.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max()))
    assert float(np.abs(got - expected).max()) <= 1e-4 * scale, [
        layer.type for layer in spec.layers
    ]
