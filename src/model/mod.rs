//! ONNX model loading and inference.
