"""The argparse type of every whole-number option: read within what the libraries under digitlab take, so a number
too large is refused naming its option rather than failing deep inside PyTorch with a message that names none.
"""

from __future__ import annotations

import argparse

# The widest whole number an option takes: a C int, which PyTorch and the C libraries under it take for thread
# counts, sizes and steps. A larger one would fail deep inside them with "Overflow when unpacking long long", which
# names no option.
MAX_WHOLE = 2**31 - 1
# A seed is fed to PyTorch's and numpy's generators, scaled and offset by the epoch (``loop.epoch_seed``): the
# range of numpy's classic seeds keeps every product within what both accept.
MAX_SEED = 2**32 - 1


def whole_number(low: int = -MAX_WHOLE, high: int = MAX_WHOLE):
    """An argparse ``type``: the option's text as an int from ``low`` to ``high``, else argparse's one-line error
    naming the option (``argument --seed: ...``). Tighter rules (at least 1, ...) are the settings' own."""

    def parse(text: str) -> int:
        value = int(text)  # not a number: argparse's own "invalid int value: 'many'"
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:,}, not {text:.40}")
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low:,}, not {text:.40}")
        return value

    parse.__name__ = "int"  # what argparse calls the type when it reports a value it cannot read
    return parse
