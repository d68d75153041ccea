"""qharness quantizer: float model -> INT8 TFLite variants under several calibration strategies."""
