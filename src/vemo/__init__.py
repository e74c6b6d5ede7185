"""vemo: recognise emotions in short face videos.

The package is laid out in the order data flows through it:
`data` (read, decode, crop, cache) -> `models` (CNN -> autoencoder -> LSTM) -> `training` ->
`evaluation` -> `reporting`; `predict` runs a trained model over any video, `export` writes ONNX.
`cli` only parses arguments and calls these.
"""

__version__ = "0.2.0"
