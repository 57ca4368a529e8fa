"""Take models and results out: saved models, predict, ONNX / torch.export, MLflow, TensorBoard, Parquet."""
