"""Data, in the order it flows: `sources` (dataset readers, decoding) -> `preprocessing` (faces, stills ->
sequences, splits, augmentation) -> `loading` (the prepared cache and batches); `synth` renders the
embedded synthetic dataset that `sources` reads like CREMA-D."""
