"""The verifier's array comparison against a plain NumPy statement of its criterion (no framework needed).

``compare_arrays`` takes a fast path when every difference is finite; its results must be those of
the plain definition: ``ok`` is ``allclose`` (NaN equal only to NaN at the same place) with ``atol``
multiplied by the root mean square of t's finite values where that exceeds 1, the maximum and mean
of ``|t - k|``, the maximum relative error over elements with ``|t| >=`` that atol (and > 0).
The referee's early test (``_clearly_close``) must never pass what the exact criterion fails.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnspec.verifier.compare import channels_last_to_first, compare_arrays
from cnnspec.verifier.referee import _clearly_close, _tolerance

SPECIALS = (np.nan, np.inf, -np.inf, 0.0, 1e-5, -1e-5, 3e38, -3e38, 1e-45)
TOLERANCES = ((1e-4, 1e-4), (0.0, 0.0), (1e-3, 0.0), (0.0, 1e-3), (1e-6, 1e-2))


def plain_statistics(t: np.ndarray, k: np.ndarray, atol: float, rtol: float) -> dict:
    """The criterion written out element by element (float64), independent of compare_arrays."""
    t64, k64 = t.astype(np.float64).ravel(), k.astype(np.float64).ravel()
    finite = [a * a for a in t64 if np.isfinite(a)]
    scale = float(np.sqrt(sum(finite) / len(finite))) if finite else 0.0
    atol = min(atol * max(1.0, scale), float(np.finfo(np.float32).max))
    diffs, relative = [], []
    for a, b in zip(t64, k64):
        if np.isnan(a) and np.isnan(b) or a == b:
            diff = 0.0
        elif np.isnan(a) or np.isnan(b):
            diff = np.inf
        else:
            diff = abs(float(np.float32(a) - np.float32(b)))  # float32 subtraction, as both graphs compute
        diffs.append(diff)
        if np.isfinite(a) and abs(a) > 0 and np.float32(abs(a)) >= np.float32(atol):
            relative.append(np.float32(diff) / np.float32(abs(a)))
    return {
        "ok": bool(np.allclose(k, t, atol=atol, rtol=rtol, equal_nan=True)),
        "max_abs_diff": max(diffs),
        "max_rel_diff": float(max(relative)) if relative else 0.0,
        "mean_abs_diff": float(np.mean(diffs)),
        "worst_index": tuple(int(i) for i in np.unravel_index(int(np.argmax(diffs)), t.shape)),
    }


def random_pair(rng: np.random.Generator, with_specials: bool):
    shape = tuple(int(n) for n in rng.integers(1, 6, size=rng.integers(1, 5)))
    t = (rng.standard_normal(shape) * 10 ** rng.uniform(-6, 2)).astype(np.float32)
    k = (t + rng.standard_normal(shape) * 10 ** rng.uniform(-8, 0)).astype(np.float32)
    if rng.random() < 0.3:
        k = t.copy()
    if rng.random() < 0.3:
        t[t < 0] = 0.0  # a ReLU output: many exact zeros, outside the relative statistic
    if with_specials:
        for array in (t, k):
            index = tuple(int(rng.integers(0, n)) for n in shape)
            array[index] = SPECIALS[rng.integers(len(SPECIALS))]
    return t, k


@pytest.mark.parametrize("with_specials", [False, True], ids=["finite", "nan-inf"])
def test_compare_arrays_equals_the_plain_criterion(with_specials):
    rng = np.random.default_rng(7)
    for trial in range(400):
        t, k = random_pair(rng, with_specials)
        atol, rtol = TOLERANCES[trial % len(TOLERANCES)]
        with np.errstate(all="ignore"):
            expected = plain_statistics(t, k, atol, rtol)
        stats = compare_arrays(t, k, atol, rtol)
        assert stats["ok"] == expected["ok"], (t, k, atol, rtol)
        assert stats["max_abs_diff"] == pytest.approx(expected["max_abs_diff"], rel=1e-6)
        assert stats["max_rel_diff"] == pytest.approx(expected["max_rel_diff"], rel=1e-6)
        assert stats["worst_index"] == expected["worst_index"]
        if np.isfinite(expected["max_abs_diff"]):
            assert stats["mean_abs_diff"] == pytest.approx(expected["mean_abs_diff"], rel=1e-6)


def test_referee_early_test_never_passes_what_the_criterion_fails():
    # e.g. a reference of -inf: its tolerance atol + rtol*inf is infinite, and |1e-5 - -inf| <= inf.
    rng = np.random.default_rng(11)
    for trial in range(400):
        t, k = random_pair(rng, with_specials=trial % 2 == 1)
        atol, rtol = TOLERANCES[trial % len(TOLERANCES)]
        with np.errstate(all="ignore"):
            clearly = _clearly_close(t, k, _tolerance(t, atol, rtol))
        if clearly:
            assert compare_arrays(t, k, _tolerance(t, atol, rtol), 0.0, scaled=False)["ok"]


def test_referee_tolerance_follows_the_layers_scale():
    """The referee computes in other ops than the frameworks, so an element near zero in a layer of
    large values carries that layer's rounding (EfficientNetV2-M: 1.4e-4 at a value near 0 in a
    layer reaching 1e3): no departure.  A mistake moving values by 0.1 % of the scale departs."""
    from cnnspec.engine.plan import resolve
    from cnnspec.verifier.referee import judge

    plan = resolve(
        {
            "cnnspec": 1,
            "name": "scaled",
            "input": {"channels": 2, "size": [4, 4]},
            "layers": [{"name": "conv", "type": "conv2d", "filters": 2, "kernel_size": 1}],
        }
    )
    reference = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32) * 1e3
    reference[0, 0, 0, 0] = 1e-3
    rounded = reference.copy()
    rounded[0, 0, 0, 0] += 1.4e-4
    verdict = judge(plan, {"conv": rounded}, {}, {"conv": reference}, weights_from="torch", atol=1e-4, rtol=1e-4)
    assert verdict.torch_departs_at is None
    assert not np.allclose(rounded, reference, atol=1e-4, rtol=1e-4)  # the absolute criterion fails it
    shifted = reference + np.float32(1e-3 * np.abs(reference).max())
    verdict = judge(plan, {"conv": shifted}, {}, {"conv": reference}, weights_from="torch", atol=1e-4, rtol=1e-4)
    assert verdict.torch_departs_at == "conv"


@pytest.mark.parametrize(
    "shape",
    [(2, 56, 56, 256), (1, 7, 7, 2048), (2, 112, 112, 64), (3, 5, 4), (2, 3, 9, 9, 17), (2, 130, 130, 3), (2, 9)],
)
def test_channels_last_to_first_moves_every_element(shape):
    array = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    moved = channels_last_to_first(array)
    assert moved.flags.c_contiguous
    np.testing.assert_array_equal(moved, np.moveaxis(array, -1, 1))


@pytest.mark.parametrize(
    "torch_at,keras_at,difference,divergent,fails",
    [
        ("se", "se", 5.5e-4, None, False),  # EfficientNetV2-M: the same rounding on both sides, the sides equal
        ("se", "se", 0.1, None, True),  # a mistake both share: 2.5 % of the scale
        ("se", None, 5.5e-4, None, True),  # one side alone departs
        ("se", "se", 5.5e-4, "se", True),  # the sides disagree with each other too
    ],
)
def test_a_shared_departure_within_rounding_is_a_note(torch_at, keras_at, difference, divergent, fails):
    from cnnspec.verifier.report import RefereeReport, VerifyReport
    from cnnspec.verifier.run import _shared_rounding

    report = VerifyReport(
        ok=divergent is None, spec="s", atol=1e-4, rtol=1e-4, batch=2, seed=0, opset=18,
        first_divergent_layer=divergent,
    )
    report.referee = RefereeReport(
        weights_from="torch", torch_departs_at=torch_at, keras_departs_at=keras_at,
        torch_max_abs_diff=difference, keras_max_abs_diff=difference if keras_at else None,
    )
    logits = np.linspace(-4, 4, 32, dtype=np.float32).reshape(1, 32)
    note = _shared_rounding(report, {"se": logits})
    assert (note is None) == fails
    if not fails:
        assert "agree with each other" in note and "5.50e-04" in note


def test_on_large_values_atol_is_relative_to_their_scale():
    """Inception v3 as torchvision initialises it reaches 1e11; an element that cancels to 1e3 there
    differs by float32 rounding of the 1e11 terms, not by a mistake -- but 1 % of a weight still fails."""
    rng = np.random.default_rng(0)
    t = (rng.standard_normal(4096) * 1e11).astype(np.float32)
    t[7] = 1e3  # a sum that cancelled
    k = t.copy()
    k[7] += 1e4  # ~1e-7 of the layer's scale
    assert not np.allclose(k, t, atol=1e-4, rtol=1e-4)  # the absolute criterion would fail it
    stats = compare_arrays(t, k, 1e-4, 1e-4)
    assert stats["ok"] and stats["scale"] == pytest.approx(1e11, rel=0.05)
    wrong = t * np.float32(1.01)
    assert not compare_arrays(t, wrong, 1e-4, 1e-4)["ok"]
    # values of order 1 or less keep the absolute tolerance
    small = (rng.standard_normal(4096) * 0.5).astype(np.float32)
    assert not compare_arrays(small, small + np.float32(2e-4), 1e-4, 0.0)["ok"]
    assert compare_arrays(small, small + np.float32(5e-5), 1e-4, 0.0)["ok"]
