"""cnnzoo: train, export, optimize and serve the classic convolutional networks."""

__version__ = "0.1.0"
