"""The errors that mean "bad input from the user": each carries a one-line message that says what to do.

They live apart from the modules that raise them (which import torch), so every entry point - the CLI, the
server, the torch-free ONNX path - can catch them without loading PyTorch.
"""


class DataError(Exception):
    """Training data (the MNIST files, the real handwriting by other writers) missing, corrupt or of the wrong kind.
    The message names the file or the setting, and what to do."""


class UsageError(Exception):
    """A command line that cannot be run as given: reported as one line, exit code 2."""


class TrainingError(Exception):
    """A run that cannot go on (its loss is no longer a number): the message says what is kept and what to try."""


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt, or does not fit the network it names."""


def one_line(message: str | BaseException, limit: int = 200) -> str:
    """``message`` (or an exception's text, else its type's name) on one line of at most ``limit`` characters.

    Libraries put newlines, indented dumps and whole file contents into their messages; a user's error should be one
    line they can read, and a cut one ends in "..." so nobody takes it for the whole story.
    """
    text = " ".join(str(message).split())
    if not text and isinstance(message, BaseException):
        text = type(message).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
