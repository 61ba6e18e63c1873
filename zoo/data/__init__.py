"""Datasets, the one preprocessing function, and augmentation.

Imports nothing heavy: the CLI's options read the constants here without importing torch.
"""

SPLITS = ("train", "val", "test")  # the splits a dataset may have, in this order
