"""Importers: an existing Keras, PyTorch or ONNX model -> a cnnspec ModelSpec (issue 11)."""
