"""CompressMark: a model-compression benchmark harness (MLMark style).

Importing this package is cheap: no torch-heavy runtime (openvino, onnxruntime, nncf) is
imported until a target is prepared.
"""

__version__ = "0.1.0"
