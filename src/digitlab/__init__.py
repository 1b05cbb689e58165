"""digitlab: train convolutional networks on MNIST and recognise handwritten digits in people's own images."""

__version__ = "0.1.0"
