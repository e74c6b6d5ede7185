"""Where data comes from: dataset readers (CREMA-D, FER2013, folders of clips) turning a root folder into
records, the reader registry, and decoding of the files they name (videos, frame folders, images)."""
