"""The verifier: ONNX export of both models, onnxruntime runs, per-layer comparison, the report."""
