"""Targets: each turns a Plan into stand-alone source for one framework, and builds it."""
