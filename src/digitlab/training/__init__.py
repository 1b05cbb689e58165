"""Training networks on MNIST, and everything that needs PyTorch: data, models, the loop, checkpoints, export."""
