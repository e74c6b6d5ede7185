"""The embedded synthetic dataset: the generative model of faces and clips (params), the drawing
(render), and writing the clips to disk exactly like CREMA-D (dataset)."""
