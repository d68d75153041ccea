"""qharness validator: float-vs-INT8 accuracy validation for quantized object detectors."""

__version__ = "0.1.0"
