"""vemo: recognise emotions in short face videos.

    >>> import vemo
    >>> df = vemo.predict("clip.mp4")   # pandas DataFrame, one row per window per face

The package is laid out in the order data flows through it:
`data` (read, decode, crop, cache) -> `models` (CNN -> autoencoder -> LSTM) -> `training` ->
`evaluation` -> `reporting`; `checkpoint` (the typed `Checkpoint` and its one loader) is the model I/O
every stage shares; `predict` runs a trained model over any video or image, `export` writes ONNX. `cli`
only parses arguments and calls these.
"""

# The one version number: pyproject.toml reads it (setuptools dynamic version), so `pip show vemo`,
# `vemo --version` and run provenance agree.
__version__ = "0.3.0"

from vemo import predict  # noqa: E402  (a callable subpackage: vemo.predict(source) -> DataFrame)

__all__ = ["__version__", "predict"]
