"""Dataset reading (COCO JSON + images) and preprocessing (letterbox, input quantization)."""
