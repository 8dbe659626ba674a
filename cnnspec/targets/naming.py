"""Names of generated classes and functions (shared by the emitters and the builder)."""

from __future__ import annotations

import keyword
import re


def class_name(model_name: str) -> str:
    """``mnist_convnet`` -> ``MnistConvnet`` (the torch class name)."""
    parts = [p for p in re.split(r"_+", model_name) if p]
    name = "".join(p[:1].upper() + p[1:] for p in parts) or "Model"
    # 'f' -> 'F' would shadow the generated module's `import torch.nn.functional as F`; 'none' -> 'None' is a keyword.
    if not name[0].isalpha() or name == "F" or keyword.iskeyword(name):
        return "Model" + name
    return name


def function_name(model_name: str) -> str:
    """``mnist_convnet`` -> ``build_mnist_convnet`` (the keras builder function)."""
    return f"build_{model_name}"
