"""Weights: moving learned tensors between frameworks, and safe weight files."""
