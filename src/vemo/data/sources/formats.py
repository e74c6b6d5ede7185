"""File extensions of the media vemo reads, shared by the readers, the decoder and `vemo predict`."""

VIDEO_EXTENSIONS = (".flv", ".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
