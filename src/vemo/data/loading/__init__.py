"""`vemo prepare`'s cache and what reads it: preprocessing of a whole dataset into a cached array with a
manifest (prepare), batches for training and evaluation (loader), contact-sheet previews."""
