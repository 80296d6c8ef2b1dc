"""Vision: camera frames to person boxes (ONNX, in memory) to floor tracks, on the box's CPU."""
