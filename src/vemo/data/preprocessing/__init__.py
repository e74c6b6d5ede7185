"""What is done to decoded frames and records before training: face finding and cropping, stills ->
simulated-motion sequences, train/val/test splits by group, and training-time augmentation."""
