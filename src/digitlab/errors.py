"""The errors that mean "bad input from the user": each carries a one-line message that says what to do.

They live apart from the modules that raise them (which import torch), so every entry point - the CLI, the
server, the torch-free ONNX path - can catch them without loading PyTorch.
"""


class DataError(Exception):
    """The MNIST files are missing, corrupt or of the wrong kind. The message names the file and what to do."""


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt, or does not fit the network it names."""
