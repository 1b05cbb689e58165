"""Training networks on MNIST, and everything that needs PyTorch: tensors, models, the loop, checkpoints, export.
The images it learns from are read or drawn in ``digitlab.datasets``, which needs no PyTorch."""
