"""Reliability: differential fuzzing against onnxruntime, hostile models, soak, concurrency, numerics."""
