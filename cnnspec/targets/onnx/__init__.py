"""The ONNX target: the spec as a standard ONNX graph, straight from the plan (needs only onnx and numpy)."""
