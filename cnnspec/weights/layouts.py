"""Tensor layout changes between PyTorch and Keras (numpy, both directions).

The layer definitions name these in their weight slots; the weight transfer applies them.
"""

from __future__ import annotations

import numpy as np


def kernel_to_keras(t: np.ndarray) -> np.ndarray:
    """(A, B, *k) -> (*k, B, A): conv (O, I/g, *k), transposed conv (I, O, *k), pointwise."""
    return np.transpose(t, tuple(range(2, t.ndim)) + (1, 0))


def kernel_to_torch(k: np.ndarray) -> np.ndarray:
    """(*k, B, A) -> (A, B, *k): the inverse of :func:`kernel_to_keras`."""
    return np.transpose(k, (k.ndim - 1, k.ndim - 2) + tuple(range(k.ndim - 2)))


def depthwise_to_keras(t: np.ndarray, channels: int, multiplier: int) -> np.ndarray:
    """(C*m, 1, kh, kw) -> (kh, kw, C, m); torch output channel c*m + j is keras (c, j)."""
    if t.shape[:2] != (channels * multiplier, 1):
        raise ValueError("depthwise kernel does not have C*m output and 1 input channel per group")
    return np.transpose(t.reshape(channels, multiplier, *t.shape[2:]), (2, 3, 0, 1))


def depthwise_to_torch(k: np.ndarray) -> np.ndarray:
    """(kh, kw, C, m) -> (C*m, 1, kh, kw)."""
    kh, kw, channels, multiplier = k.shape
    return np.transpose(k, (2, 3, 0, 1)).reshape(channels * multiplier, 1, kh, kw)
