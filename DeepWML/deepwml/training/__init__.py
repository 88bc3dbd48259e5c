"""Training: manifests, stratified splits, augmentation, the loss and the training loop."""
