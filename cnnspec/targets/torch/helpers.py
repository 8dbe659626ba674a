"""PyTorch helper modules that generated models include where no torch module is exact.

Each helper is written once here, rank-generic, and copied verbatim into a generated module
that uses it (:func:`cnnspec.targets.helper_text.definition_text` reads this file without
importing it).  So these definitions may use only what a generated module imports:
``torch``, ``nn`` (``torch.nn``) and ``F`` (``torch.nn.functional``); never cnnspec.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CountedAvgPool(nn.Module):
    """Average pooling that divides each window sum by the number of *counted* cells.

    The rank is that of ``kernel_size``.  The input is zero-padded by ``padding`` ((before,
    after) per spatial dim) and by ``overhang`` more cells at the end (ceil-mode windows
    running past the padding).  Real cells always count; the declared padding counts only
    when ``count_padding`` is true; the overhang never counts.  The counted fraction of each
    window is the same average pool applied to a one-channel mask (1 = counted), so no
    state is kept.
    """

    def __init__(self, kernel_size, stride, padding, overhang, count_padding):
        super().__init__()
        self.kernel_size = tuple(kernel_size)
        self.stride = tuple(stride)
        # F.pad takes (before, after) pairs starting from the LAST dim.
        self.declared = tuple(v for before, after in reversed(padding) for v in (before, after))
        self.overhang = tuple(v for extra in reversed(overhang) for v in (0, extra))
        self.padding_value = 1.0 if count_padding else 0.0
        self.pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[len(self.kernel_size) - 1]

    def forward(self, x):
        window_mean = self.pool(
            F.pad(F.pad(x, self.declared), self.overhang), self.kernel_size, self.stride
        )
        mask = F.pad(torch.ones_like(x[:1, :1]), self.declared, value=self.padding_value)
        counted_fraction = self.pool(F.pad(mask, self.overhang), self.kernel_size, self.stride)
        return window_mean / counted_fraction
