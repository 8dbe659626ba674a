"""Test helpers for users' own test suites.

>>> from cnnspec.testing import assert_equivalent
>>> assert_equivalent("model.yaml", torch_model=my_port)      # doctest: +SKIP
"""

from __future__ import annotations

from cnnspec.verifier.report import VerifyReport


def assert_equivalent(spec, *, name_map=None, **kwargs) -> VerifyReport:
    """Assert that the PyTorch and Keras models of ``spec`` agree (see :func:`cnnspec.verify`).

    Args:
        spec: a path, YAML/JSON text, dict, ModelSpec or Plan.
        name_map: ``{spec layer: torch module path or Keras layer name}`` for a hand-written
            model whose parts are not named like the spec layers (see :func:`cnnspec.verify`).
        **kwargs: passed on to :func:`cnnspec.verify` (``torch_model``, ``keras_model``,
            ``sync_weights``, ``atol``, ``rtol``, ``batch``, ``seed``, ...).

    Returns:
        The report, when the models agree.

    Raises:
        AssertionError: they do not; the message names the first divergent layer, its
            difference and a hint, plus every other problem (shapes, parameter counts).
    """
    from cnnspec.verifier.run import verify

    report = verify(spec, name_map=name_map, **kwargs)
    if report.ok:
        return report
    lines = [
        f"models of spec '{report.spec}' are not equivalent (atol {report.atol:g}, rtol {report.rtol:g})"
    ]
    if report.divergence is not None:
        d = report.divergence
        diff = "shape differs" if d.max_abs_diff is None else f"max abs diff {d.max_abs_diff:.3g}"
        lines.append(f"first divergent layer: '{d.name}' ({d.type}), {diff}")
        lines.append(f"hint: {d.hint}")
    for framework, rows in report.matching.items():
        lines.append(
            f"matching (spec layer -> {framework}): "
            + ", ".join(f"{row.part} -> {row.target} ({row.how})" for row in rows)
        )
    lines.extend(
        f"- {problem}"
        for problem in report.problems
        if report.divergence is None or not problem.startswith("first divergent")
    )
    raise AssertionError("\n".join(lines))
