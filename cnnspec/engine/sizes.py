"""Spatial sizes as formulas of the input size, for models whose input size is left open.

A convolution, pool, padding, crop, upsampling or transposed convolution maps an axis of
length ``n`` to ``⌊(m·n + c) / d⌋`` for integers ``m >= 0``, ``c`` and ``d >= 1``; a chain
of them is such a map of a map.  :class:`Size` keeps that chain in a canonical form
(floor-of-floor merged, common factors cancelled), evaluates it exactly at any input
size and prints it the way ``explain`` shows it (``⌈H / 32⌉``, ``⌊(H − 1) / 2⌋``).  The one
rule outside that family, PyTorch's ceil-mode pooling (the last window may not start in
the right padding), is a ``min`` of two such maps.  No framework is imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from cnnspec.engine import shapes as S


@dataclass(frozen=True)
class Size:
    """One spatial axis as a function of one input axis (``axis``), or a constant.

    ``inner`` is None for the input axis itself; otherwise the value is
    ``⌊(mul·inner + add) / div⌋``.  ``low``, when set, makes the value ``min(self, low)``.
    """

    axis: str | None
    inner: Size | None = None
    mul: int = 1
    add: int = 0
    div: int = 1
    constant: int | None = None
    low: Size | None = None

    # -- construction ------------------------------------------------------------------
    @staticmethod
    def of_axis(name: str) -> Size:
        """The input axis ``name`` (``H``, ``W``...) itself."""
        return Size(axis=name)

    @staticmethod
    def fixed(value: int) -> Size:
        """A size that does not depend on the input."""
        return Size(axis=None, constant=value)

    def affine(self, mul: int = 1, add: int = 0, div: int = 1) -> Size:
        """``⌊(mul·self + add) / div⌋``, simplified."""
        if div < 1 or mul < 0:
            raise ValueError(f"affine map needs div >= 1 and mul >= 0, got {mul}, {add}, {div}")
        if self.constant is not None or mul == 0:
            base = 0 if self.constant is None else self.constant
            return Size.fixed((mul * base + add) // div)
        if self.low is not None:
            return Size(axis=self.axis, inner=self, mul=mul, add=add, div=div)._reduced()
        if self.is_offset:
            # (X + c) then this map: fold the offset in, so divisions still merge with X's
            assert self.inner is not None
            return self.inner.affine(mul, mul * self.add + add, div)
        if mul == 1 and div == 1:
            # a plain offset stays readable as "⌈H / 8⌉ − 2" rather than "⌊(H − 9) / 8⌋"
            return Size(self.axis, self, 1, add, 1)._reduced()
        if self.inner is not None and mul == 1:
            # ⌊(⌊y / d1⌋ + c) / d⌋ = ⌊(y + c·d1) / (d1·d)⌋
            return Size(
                self.axis, self.inner, self.mul, self.add + add * self.div, self.div * div
            )._reduced()
        if self.inner is not None and self.div == 1:
            return Size(self.axis, self.inner, self.mul * mul, self.add * mul + add, div)._reduced()
        return Size(self.axis, self, mul, add, div)._reduced()

    def _reduced(self) -> Size:
        # ⌊(g·m·x + c) / (g·d)⌋ = ⌊(m·x + ⌊c / g⌋) / d⌋: the numerator's variable part is a multiple of g
        g = math.gcd(self.mul, self.div)
        if g > 1:
            return Size(self.axis, self.inner, self.mul // g, self.add // g, self.div // g)
        if self.mul == 1 and self.add == 0 and self.div == 1 and self.inner is not None:
            return self.inner
        return self

    def ceil_div(self, divisor: int) -> Size:
        """``⌈self / divisor⌉``."""
        return self.affine(1, divisor - 1, divisor)

    def plus(self, amount: int) -> Size:
        """``self + amount``."""
        return self.affine(1, amount, 1)

    def scaled(self, factor: Fraction | int) -> Size:
        """``⌊self · factor⌋`` for a rational factor."""
        factor = Fraction(factor)
        return self.affine(factor.numerator, 0, factor.denominator)

    def at_most(self, other: Size) -> Size:
        """``min(self, other)``."""
        if other == self:
            return self
        if self.constant is not None and other.constant is not None:
            return Size.fixed(min(self.constant, other.constant))
        return Size(self.axis, self.inner, self.mul, self.add, self.div, self.constant, other)

    @property
    def is_offset(self) -> bool:
        """Whether this is ``inner + add`` of a non-trivial inner size (kept apart for reading)."""
        return (
            self.inner is not None
            and self.inner.inner is not None
            and self.low is None
            and (self.mul, self.div) == (1, 1)
        )

    # -- reading -----------------------------------------------------------------------
    @property
    def is_fixed(self) -> bool:
        """Whether the size is the same for every input size."""
        return self.constant is not None

    def at(self, n: int) -> int:
        """The size when the input axis is ``n``."""
        if self.constant is not None:
            value = self.constant
        elif self.inner is None and self.mul == 1 and self.add == 0 and self.div == 1:
            value = n
        else:
            inner = n if self.inner is None else self.inner.at(n)
            value = (self.mul * inner + self.add) // self.div
        if self.low is not None:
            value = min(value, self.low.at(n))
        return value

    def text(self) -> str:
        """The formula as ``explain`` prints it (``⌈H / 2⌉``, ``2·H − 1``...)."""
        if self.constant is not None:
            body = str(self.constant)
        elif self.inner is None and (self.mul, self.add, self.div) == (1, 0, 1):
            body = self.axis or "?"
        else:
            body = _affine_text(
                self.inner.text() if self.inner is not None else (self.axis or "?"),
                self.mul,
                self.add,
                self.div,
            )
        if self.low is not None:
            return f"min({body}, {self.low.text()})"
        return body

    def __str__(self) -> str:
        return self.text()


def _signed(amount: int) -> str:
    return f" + {amount}" if amount > 0 else (f" − {-amount}" if amount < 0 else "")


def _affine_text(inner: str, mul: int, add: int, div: int) -> str:
    term = inner if mul == 1 else f"{mul}·{_grouped(inner)}"
    if div == 1:
        return term + _signed(add)
    # the floor and the ceiling form of the same value; show the one with the smaller constant
    floor_add, ceil_add = add, add - div + 1
    if abs(ceil_add) < abs(floor_add):
        numerator = term + _signed(ceil_add)
        return f"⌈{_grouped(numerator)} / {div}⌉"
    numerator = term + _signed(floor_add)
    return f"⌊{_grouped(numerator)} / {div}⌋"


def _grouped(text: str) -> str:
    plain = text.replace("·", "")
    return f"({text})" if (" + " in plain or " − " in plain) and not _wrapped(text) else text


def _wrapped(text: str) -> bool:
    return text[:1] in "⌊⌈" and text[-1:] in "⌋⌉" and _balanced_outer(text)


def _balanced_outer(text: str) -> bool:
    depth = 0
    for position, char in enumerate(text):
        depth += char in "⌊⌈("
        depth -= char in "⌋⌉)"
        if depth == 0 and position < len(text) - 1:
            return False
    return True


# -- the rules the layer definitions share ---------------------------------------------


def window_size(
    size: Size, kernel: int, stride: int, dilation: int, pads: tuple[int, int], mode: str
) -> Size:
    """Output of a convolution-like window: ``⌈n / s⌉`` for 'same', else ``⌊(n + p − dk) / s⌋ + 1``."""
    if mode == "same":
        return size.ceil_div(stride)
    total = pads[0] + pads[1] - S.effective_kernel(kernel, dilation)
    return size.affine(1, total + stride, stride)


def ceil_pool_size(size: Size, window: int, stride: int, pads: tuple[int, int]) -> Size:
    """PyTorch's ceil-mode pool length: ``⌈(n + p − k) / s⌉ + 1``, at most ``⌈(n + before) / s⌉``."""
    rounded_up = size.affine(1, pads[0] + pads[1] - window + 2 * stride - 1, stride)
    starts_inside = size.affine(1, pads[0] + stride - 1, stride)
    return rounded_up.at_most(starts_inside)


def scale_fraction(scale: float) -> Fraction:
    """A resize scale as the fraction it stands for (``1.5`` → 3/2), for exact size formulas."""
    return Fraction(scale).limit_denominator(1000)
