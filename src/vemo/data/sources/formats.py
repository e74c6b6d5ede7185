"""File extensions of the media vemo reads, shared by the readers, the decoder and `vemo predict`."""

VIDEO_EXTENSIONS = (".flv", ".mp4", ".m4v", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".3gp", ".wmv")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")
