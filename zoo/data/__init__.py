"""Datasets, the one preprocessing function, and augmentation."""
