"""Training-time readers of the table: the table's clips (index and one row's clip), the PyTorch dataset and the Ray Data reader."""
