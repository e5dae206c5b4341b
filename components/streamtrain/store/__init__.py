"""The model store (numbered versions, TF Serving layout) and the trainer's checkpoints, written atomically."""
