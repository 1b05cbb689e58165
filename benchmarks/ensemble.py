"""Test accuracy of a small ensemble: the softmax outputs of several checkpoints averaged, optionally with TTA.

    python benchmarks/ensemble.py runs/repro/default/seed*/model.safetensors [--tta]

Each checkpoint is also scored alone, so the table shows what the ensemble adds. Nothing is tuned on the test set:
every member is the final epoch of a fixed recipe, weighted equally.
"""

from __future__ import annotations

import argparse

import torch

from digitlab.training import checkpoint
from digitlab.training.data import load_mnist
from digitlab.scores import TTA_SHIFTS
from digitlab.training.evaluate import infer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--tta", action="store_true", help="also average over 1-pixel shifts")
    args = parser.parse_args()

    images, labels = load_mnist("test")
    shifts = TTA_SHIFTS if args.tta else ((0, 0),)
    total = None  # (N, classes): a digit called "not a digit" by an 11-output ensemble counts as an error
    for path in args.checkpoints:
        model, _ = checkpoint.load(path)
        log_probs = torch.log_softmax(infer(model, images, shifts=shifts), dim=1)
        total = log_probs.exp() if total is None else total + log_probs.exp()
        accuracy = (log_probs.argmax(1) == labels).double().mean().item()
        print(f"{100 * accuracy:.2f}%  {path}")
    accuracy = (total.argmax(1) == labels).double().mean().item()
    errors = int((total.argmax(1) != labels).sum())
    print(f"{100 * accuracy:.2f}%  ensemble of {len(args.checkpoints)}{' with shift TTA' if args.tta else ''} "
          f"({errors} errors in {len(labels)})")


if __name__ == "__main__":
    main()
