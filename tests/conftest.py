"""Test-session set-up shared by every test module."""

import os

# The frameworks are configured once, as `cnnspec verify` configures them (cnnspec.verifier.onnx_export),
# before any test imports TensorFlow: whichever module happens to import it first must not decide how
# TensorFlow behaves for the rest of the session (oneDNN on or off changes which kernels exist).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
