"""The PyTorch target (NCHW)."""
