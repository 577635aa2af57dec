"""Training-time readers of the table: the clip index, the PyTorch dataset and the Ray Data reader."""
