"""Input and output: model files (:mod:`.model_file`), checkpoints, ONNX export,
the model summary and the plots."""
