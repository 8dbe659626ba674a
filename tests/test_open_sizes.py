"""Open input sizes in the engine: ``size: [null, null]``, formulas of the input, the refusals.

The size formulas are checked against the planner's own numbers at every input size from 1
to 60 (odd and even) for every example of every registered layer type, and against random
chains of layers; the planner's numbers are the ones tests/test_engine_vs_frameworks.py
compares with PyTorch and Keras.  No framework is imported here.
"""

from __future__ import annotations

import random

import pytest

from cnnspec.engine.plan import AXIS_NAMES, resolve
from cnnspec.engine.sizes import Size, ceil_pool_size, window_size
from cnnspec.errors import SpecError
from cnnspec.layers import REGISTRY


def _open(document: dict) -> dict:
    opened = dict(document)
    opened["input"] = dict(document["input"], size=[None] * len(document["input"]["size"]))
    return opened


def _formula_shape(layer, size: tuple[int, ...]) -> tuple[int, ...]:
    env = dict(zip(AXIS_NAMES[len(size)], size))
    return tuple(s.constant if s.is_fixed else s.at(env[s.axis]) for s in layer.sizes)


def _check_formulas(document: dict, sizes) -> int:
    """Compare formulas with the planner at every size the model accepts; returns the sizes compared.

    A model that no size resolves must be refused for the one reason open sizes add: a
    parameter count that would follow the input size.
    """
    opened = _open(document)
    resolved, refusals = 0, set()
    for size in sizes:
        try:
            plan = resolve(opened, input_size=size)
        except SpecError as error:
            refusals.add(error.problems[0].message)
            continue  # too small for this model: the planner says so, there is nothing to compare
        resolved += 1
        for layer in plan.layers:
            if len(layer.output_shape) > 1:
                assert _formula_shape(layer, size) == tuple(layer.output_shape[1:]), (
                    f"{layer.name} at {size}: formulas {[str(s) for s in layer.sizes]} "
                    f"vs planner {layer.output_shape}"
                )
    if not resolved:
        assert refusals and all("depends on the input size" in r for r in refusals), refusals
    return resolved or len(refusals)


EXAMPLES = [
    pytest.param(definition, number, id=f"{definition.types[0]}-{number}")
    for definition in REGISTRY.definitions()
    for number in range(len(definition.examples))
]


@pytest.mark.parametrize(("definition", "number"), EXAMPLES)
def test_every_example_formula_equals_the_planner_at_every_size(definition, number):
    example = definition.examples[number]
    rank = len(example.size)
    sizes = [
        tuple(n + delta * (axis + 1) for axis in range(rank))
        for n in range(1, 31)
        for delta in (0, 1)
    ]
    if rank == 3:
        sizes = sizes[::3]
    assert _check_formulas(example.spec(), sizes) > 0


def _random_chain(rng: random.Random) -> list[dict]:
    layers: list[dict] = []
    for _ in range(rng.randint(1, 6)):
        kind = rng.choice(
            ["conv", "pool", "ceil_pool", "transpose", "upsample", "pad", "crop", "resize"]
        )
        k, s = rng.randint(1, 4), rng.randint(1, 3)
        if kind == "conv":
            padding = rng.choice(["same", "valid", rng.randint(0, 2)])
            layers.append(
                {
                    "type": "conv2d",
                    "filters": 2,
                    "kernel_size": k,
                    "stride": s,
                    "dilation": rng.randint(1, 2),
                    "padding": padding,
                }
            )
        elif kind in ("pool", "ceil_pool"):
            padding = (
                rng.randint(0, (k - 1) // 2)
                if kind == "ceil_pool"
                else rng.choice(["same", "valid"])
            )
            layers.append(
                {
                    "type": "max_pool2d",
                    "pool_size": k,
                    "stride": s,
                    "padding": padding,
                    "ceil_mode": kind == "ceil_pool",
                }
            )
        elif kind == "transpose":
            layers.append(
                {
                    "type": "conv_transpose2d",
                    "filters": 2,
                    "kernel_size": k,
                    "stride": s,
                    "padding": rng.choice(["same", "valid", 0]),
                }
            )
        elif kind == "upsample":
            layers.append({"type": "upsample", "scale_factor": rng.randint(1, 3)})
        elif kind == "pad":
            layers.append(
                {"type": "zero_pad2d", "padding": [[rng.randint(0, 2), rng.randint(0, 2)]] * 2}
            )
        elif kind == "crop":
            layers.append({"type": "crop2d", "cropping": [[1, 0], [0, 1]]})
        else:
            layers.append({"type": "resize", "scale": rng.choice([0.5, 1.5, 2.0, 0.75])})
    return layers


@pytest.mark.parametrize("seed", range(40))
def test_random_chains_formula_equals_the_planner(seed):
    rng = random.Random(seed)
    document = {
        "cnnspec": 1,
        "input": {"channels": 2, "size": [16, 16]},
        "layers": _random_chain(rng),
    }
    assert _check_formulas(document, [(n, n + 3) for n in range(1, 70)]) > 0


def test_formulas_read_like_the_arithmetic():
    h = Size.of_axis("H")
    assert h.ceil_div(2).text() == "⌈H / 2⌉"
    assert h.ceil_div(2).ceil_div(2).ceil_div(2).text() == "⌈H / 8⌉"
    # a 3x3 'valid' conv at stride 2: ⌊(H − 3) / 2⌋ + 1 = ⌊(H − 1) / 2⌋
    assert window_size(h, 3, 2, 1, (0, 0), "valid").text() == "⌊(H − 1) / 2⌋"
    assert window_size(h, 3, 1, 1, (1, 1), "explicit").text() == "H"
    assert h.affine(2, -1).text() == "2·H − 1"
    assert h.ceil_div(4).affine(4).text() == "4·⌈H / 4⌉"
    assert Size.fixed(7).ceil_div(2).text() == "4"
    # PyTorch's ceil-mode 3/2 pool (Inception): ⌈(H − 3) / 2⌉ + 1, never a window starting past the input
    pooled = ceil_pool_size(h, 3, 2, (0, 0))
    assert [pooled.at(n) for n in (5, 6, 7, 8)] == [2, 3, 3, 4]


def test_canonical_form_is_exact_by_brute_force():
    rng = random.Random(7)
    for _ in range(300):
        size, steps = Size.of_axis("H"), []
        for _ in range(rng.randint(1, 5)):
            mul, add, div = rng.randint(1, 3), rng.randint(-4, 4), rng.randint(1, 4)
            size = size.affine(mul, add, div)
            steps.append((mul, add, div))
        for n in range(0, 80):
            value = n
            for mul, add, div in steps:
                value = (mul * value + add) // div
            assert size.at(n) == value, (steps, n, size.text())


RESNET_STEM = {
    "cnnspec": 1,
    "name": "stem",
    "input": {"channels": 3, "size": [None, None], "reference_size": [224, 224]},
    "layers": [
        {"type": "conv2d", "filters": 8, "kernel_size": 7, "stride": 2, "padding": "same"},
        {"type": "max_pool2d", "pool_size": 3, "stride": 2, "padding": "same"},
        {"type": "conv2d", "filters": 8, "kernel_size": 3, "stride": 2, "padding": 1},
        {"type": "global_avg_pool"},
        {"type": "dense", "units": 4},
    ],
}


def test_open_spec_plans_at_its_reference_and_at_a_given_size():
    plan = resolve(RESNET_STEM)
    assert plan.open_axes == (True, True) and plan.size_source == "reference"
    assert plan.input_shape == (3, 224, 224)
    assert plan.layers[1].sizes[0].text() == "⌈H / 4⌉"
    # ⌊(⌈H / 4⌉ + 2 − 3) / 2⌋ + 1 merges into one division
    assert [s.text() for s in plan.layers[2].sizes] == ["⌈H / 8⌉", "⌈W / 8⌉"]
    at_225 = resolve(RESNET_STEM, input_size=(225, 96))
    assert at_225.size_source == "given"
    assert at_225.layers[0].output_shape == (8, 113, 48)
    # 'same' at stride 2 pads by the size: 3/3 at the odd 225, 2/3 at the even 96 (the extra cell at the end)
    assert at_225.layers[0].padding == ((3, 3), (2, 3))
    assert at_225.total_params == plan.total_params  # parameter counts do not depend on the size


def test_open_spec_without_reference_plans_at_the_assumed_size():
    document = dict(RESNET_STEM, input={"channels": 3, "size": [None, None]})
    plan = resolve(document)
    assert plan.size_source == "assumed" and plan.input_shape == (3, 224, 224)


def test_fixed_size_spec_refuses_another_size():
    document = dict(RESNET_STEM, input={"channels": 3, "size": [224, 224]})
    assert resolve(document, input_size=(224, 224)).size_source == "given"
    with pytest.raises(SpecError) as error:
        resolve(document, input_size=(256, 224))
    message = str(error.value)
    assert "fixed at 224×224" in message and "H = 256" in message and "expected 224" in message
    with pytest.raises(SpecError, match="has 3 axes but the model has 2"):
        resolve(document, input_size=(224, 224, 3))


def test_partly_open_spec_keeps_the_fixed_axis():
    document = dict(RESNET_STEM, input={"channels": 3, "size": [None, 64]})
    plan = resolve(document, input_size=(100, 64))
    assert plan.open_axes == (True, False)
    assert plan.layers[0].sizes[1].is_fixed and plan.layers[0].sizes[1].constant == 32
    with pytest.raises(SpecError, match="W = 65"):
        resolve(document, input_size=(100, 65))


def test_reference_size_must_fit_the_fixed_axes():
    from pydantic import ValidationError

    from cnnspec.load.loader import load_spec

    with pytest.raises((SpecError, ValidationError), match="fixed at 64"):
        load_spec(
            dict(
                RESNET_STEM, input={"channels": 3, "size": [None, 64], "reference_size": [224, 224]}
            )
        )
    with pytest.raises((SpecError, ValidationError), match="reference_size has 1"):
        load_spec(
            dict(RESNET_STEM, input={"channels": 3, "size": [None, None], "reference_size": [224]})
        )


def test_dense_after_flatten_of_an_open_map_is_refused_at_the_dense():
    document = {
        "cnnspec": 1,
        "input": {"channels": 1, "size": [None, None]},
        "layers": [
            {"type": "conv2d", "filters": 4, "kernel_size": 3, "name": "features"},
            {"type": "flatten", "name": "flat"},
            {"type": "dropout", "rate": 0.5, "name": "drop"},
            {"type": "dense", "units": 10, "name": "head"},
        ],
    }
    with pytest.raises(SpecError) as error:
        resolve(document)
    problem = error.value.problems[0]
    assert problem.path[:2] == ("layers", 3)
    assert "'head' has a parameter count that depends on the input size" in problem.message
    assert "'drop'" in problem.message
    # the same model with a fixed size is fine, and so is a pooled head at any size
    assert (
        resolve(dict(document, input={"channels": 1, "size": [8, 8]})).total_params
        == 40 + 144 * 10 + 10
    )
    pooled = dict(
        document, layers=[document["layers"][0], {"type": "global_avg_pool"}, document["layers"][3]]
    )
    assert resolve(pooled, input_size=(31, 17)).total_params == 4 * 9 + 4 + 4 * 10 + 10


def test_a_join_that_agrees_only_at_some_sizes_is_noted():
    unet = {
        "cnnspec": 1,
        "input": {"channels": 1, "size": [None, None], "reference_size": [64, 64]},
        "layers": [
            {"type": "conv2d", "filters": 2, "kernel_size": 3, "padding": "same", "name": "enc"},
            {"type": "max_pool2d", "pool_size": 2, "name": "down1"},
            {"type": "max_pool2d", "pool_size": 2, "name": "down2"},
            {"type": "upsample", "scale_factor": 4, "name": "up"},
            {"type": "concat", "inputs": ["enc", "up"], "name": "skip"},
        ],
    }
    plan = resolve(unet)
    note = plan.size_notes[0]
    assert (note.layer, note.period, note.first, note.other) == ("skip", 4, "enc", "up")
    assert "only when H is a multiple of 4" in note.text()
    assert note.values[0] != note.values[1]
    with pytest.raises(SpecError, match="concat joins along channels"):
        resolve(unet, input_size=(66, 64))


def test_a_layer_that_takes_only_multiples_is_noted_and_sets_the_size_step():
    from cnnspec.verifier.run import default_sizes

    esrgan = {
        "cnnspec": 1,
        "input": {"channels": 3, "size": [None, None], "reference_size": [64, 48]},
        "layers": [
            {"type": "conv2d", "filters": 4, "kernel_size": 3, "stride": 2, "padding": 1, "name": "down"},
            {"type": "pixel_unshuffle", "factor": 2, "name": "unshuffle"},
        ],
    }
    plan = resolve(esrgan)
    notes = {note.axis: note for note in plan.size_notes}
    # the unshuffle's input is ⌊(H + 1) / 2⌋: even exactly when H ≡ 0 or 3 (mod 4), no period
    assert notes["H"].layer == "unshuffle" and notes["H"].multiple == 2 and notes["H"].period is None
    esrgan["layers"][0]["stride"] = 1
    plan = resolve(esrgan)
    assert [(note.axis, note.period) for note in plan.size_notes] == [("H", 2), ("W", 2)]
    assert "only when W is a multiple of 2" in plan.size_notes[1].text()
    assert plan.size_steps == (2, 2)
    assert default_sizes(plan) == [(64, 48), (66, 50)]
    with pytest.raises(SpecError, match="factor 2 does not divide the input's size 65×48"):
        resolve(esrgan, input_size=(65, 48))


# -- explain -----------------------------------------------------------------------------------------


def _resnet50_open() -> dict:
    import pathlib

    import yaml

    document = yaml.safe_load(
        (pathlib.Path(__file__).parents[1] / "bench" / "resnet50.yaml").read_text()
    )
    document["input"] = {"channels": 3, "size": [None, None], "reference_size": [224, 224]}
    return document


def test_resnet50_open_final_map_is_the_input_over_32():
    plan = resolve(_resnet50_open())
    last_map = [layer for layer in plan.layers if len(layer.output_shape) > 1][-1]
    assert [s.text() for s in last_map.sizes] == ["⌈H / 32⌉", "⌈W / 32⌉"]
    # Keras' ResNet50 (all 'same' at the strides) gives 7×7 at 224 and 8×8 at 225; 97 gives 4×4
    for n, expected in ((224, 7), (225, 8), (256, 8), (97, 4)):
        assert (
            resolve(_resnet50_open(), input_size=(n, n)).layer(last_map.name).output_shape[1:]
            == (expected,) * 2
        )
    assert (
        plan.total_params
        == resolve(_resnet50_open(), input_size=(97, 97)).total_params
        == 25_557_032 + 53_120
    )


def test_explain_shows_formulas_and_the_numbers_at_a_size():
    from cnnspec.teach.explain import explain

    stem = dict(RESNET_STEM)
    table = explain(stem).text()
    assert "3×H×W" in table and "8×⌈H/2⌉×⌈W/2⌉" in table and "⌈H/2⌉×⌈W/2⌉×8" in table
    assert "NCHW at 224×224" in table and "8×112×112" in table
    assert "H′ = ⌈H / 8⌉" in table  # the 3×3 stride-2 conv after ⌈H / 4⌉, merged into one division
    assert "'same' at stride 2 pads by the size" in table
    at_odd = explain(stem, input_size=(225, 97)).text()
    assert "NCHW at 225×97" in at_odd and "8×113×49" in at_odd
    data = explain(stem).to_dict()
    assert data["open_axes"] == [True, True] and data["size_source"] == "reference"
    assert data["layers"][1]["output_formula"]["NHWC"] == ["⌈H/4⌉", "⌈W/4⌉", "8"]
    korean = explain(stem, lang="ko").text()
    assert "224×224일 때 NCHW" in korean and "입력 크기가 열린 축" in korean


def test_explain_without_a_size_shows_formulas_only():
    from cnnspec.teach.explain import explain

    table = explain(dict(RESNET_STEM, input={"channels": 3, "size": [None, None]})).text()
    assert "NCHW at" not in table and "worked at 224×224" in table


def test_explain_names_the_join_that_needs_some_sizes():
    from cnnspec.teach.explain import explain

    unet = {
        "cnnspec": 1,
        "input": {"channels": 1, "size": [None, None], "reference_size": [64, 64]},
        "layers": [
            {"type": "conv2d", "filters": 2, "kernel_size": 3, "padding": "same", "name": "enc"},
            {"type": "max_pool2d", "pool_size": 2},
            {"type": "upsample", "scale_factor": 2, "name": "up"},
            {"type": "concat", "inputs": ["enc", "up"], "name": "skip"},
        ],
    }
    notes = [n for n in explain(unet).to_dict()["notes"] if n["id"] == "open_join"]
    assert notes and notes[0]["layer"] == "skip" and "multiple of 2" in notes[0]["text"]


def test_cli_explain_input_size(tmp_path, capsys):
    import yaml

    from cnnspec.cli.main import main

    spec = tmp_path / "stem.yaml"
    spec.write_text(yaml.safe_dump(RESNET_STEM))
    assert main(["explain", str(spec), "--input-size", "225,97"]) == 0
    assert "8×113×49" in capsys.readouterr().out
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(yaml.safe_dump(dict(RESNET_STEM, input={"channels": 3, "size": [64, 64]})))
    assert main(["explain", str(fixed), "--input-size", "65,64"]) == 2
    err = capsys.readouterr().err
    assert "fixed at 64×64" in err and "input.size[0]" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(["explain", str(spec), "--input-size", "0,big"])
    assert exit_info.value.code == 2
