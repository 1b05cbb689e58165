"""A new writer's digits: how much `digitlab finetune` on a few of their labelled images helps read the rest, and what
it costs on MNIST.

The writers are scikit-learn's bundled digits (13 writers outside MNIST), or with ``--source hwd1000`` the one
writer of HwD-1000 (``writers.py``: 100 digits of each class, held out from every training run and every choice, so
it lives in the report part alone). Their digits are drawn as people hand digits in (``handwriting_render.CASES``,
in turn). From one part of them (``handwriting.PARTS``: settings are chosen on ``choose``, the table is reported on
``report``), ``--per-class`` labelled images of each digit, picked by the seed, go into a class folder, and the rest
of that part is the test: for hwd1000 at 50 per class, the writer's other 50 of each digit. For each count: accuracy on the rest before and after fine-tuning
(read as `digitlab eval --data` reads a folder), MNIST test accuracy before and after, and the time `finetune` takes
(training, and the ONNX export apart). Choose settings on the MNIST digits the base model held out (``mnist_val``
in the JSON rows), never on the MNIST test set the table reports. Results: docs/own_digits.md.

    python benchmarks/new_writer.py                                   # 10 and 50 per class, report part
    python benchmarks/new_writer.py --part choose --mnist-ratio 1 3 --keep-base 0 0.3    # a sweep
    python benchmarks/new_writer.py --source hwd1000 --per-class 50 --goal-share 0.25     # one held-out writer
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from machine import StolenTime, hardware, versions

# Sources of a new writer (``handwriting.load_source``): writers no model trains on, so fine-tuning meets them fresh.
WRITERS = ("sklearn", "hwd1000")


def write_folder(folder: Path, digits: np.ndarray, labels: np.ndarray, seed: int) -> None:
    """Each digit drawn as a person's file (the cases in turn) into folder/<label>/."""
    from digitlab.datasets.handwriting_render import CASES, draw

    rng = np.random.default_rng(seed)
    for index, (digit, label) in enumerate(zip(digits, labels)):
        data = draw(digit, CASES[index % len(CASES)], rng)
        suffix = "jpg" if data[:2] == b"\xff\xd8" else "png"
        path = folder / str(int(label)) / f"{index:04d}.{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def labelled_and_rest(source: str, part: str, per_class: int, seed: int):
    """(images, labels) of ``per_class`` digits of each class picked at random from the part, and of the rest."""
    from digitlab.datasets.handwriting import load_source

    images, labels = load_source(source, part)
    fewest = min(int((labels == d).sum()) for d in range(10))
    if per_class >= fewest:  # nothing of some digit would be left to measure
        raise ValueError(f"--per-class {per_class}: {source}'s {part} part has {fewest} of its rarest digit; "
                         f"ask for fewer so some are left to measure")
    rng = np.random.default_rng([seed, per_class])
    picked = np.concatenate([rng.permutation(np.nonzero(labels == d)[0])[:per_class] for d in range(10)])
    rest = np.setdiff1d(np.arange(len(labels)), picked)
    return (images[picked], labels[picked]), (images[rest], labels[rest])


def scores(model_path, rest_folder: Path, mnist) -> dict:
    """Accuracy on the writer's other digits (as `eval --data` reads them) and on the MNIST test set."""
    import torch

    from digitlab.training import checkpoint
    from digitlab.labels import temperature_of
    from digitlab.training.evaluate import evaluate, evaluate_folder
    from digitlab.datasets.folders import load_folder

    model, meta = checkpoint.load(model_path)
    data = load_folder(rest_folder)
    found = evaluate_folder(model, data, temperature=temperature_of(meta))
    with torch.no_grad():
        on_mnist = evaluate(model, *mnist)
    return {"rest": 100 * found["accuracy"], "rest_images": found["count"], "rest_refused": len(data.skipped),
            "mnist": 100 * on_mnist["accuracy"]}


def main() -> int:
    from digitlab.threads import yield_when_waiting

    yield_when_waiting()  # as `digitlab finetune` does: OpenMP's waiting threads sleep on a shared machine
    from digitlab.training.data import load_mnist
    from digitlab.training.export import export_onnx
    from digitlab.training.finetune import FinetuneConfig, finetune
    from digitlab.datasets.handwriting import PARTS

    defaults = FinetuneConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=WRITERS, default="sklearn",
                        help="the new writer: scikit-learn's digits, or HwD-1000's one held-out writer (report part)")
    parser.add_argument("--per-class", type=int, nargs="+", default=[10, 50], help="labelled images per digit")
    parser.add_argument("--part", choices=PARTS, default="report", help="choose settings on 'choose' (default report)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--goal-share", type=float, default=0.5,
                        help="share of the new writer's errors fine-tuning should remove: the goal column")
    parser.add_argument("--model", help="the base checkpoint (default: the bundled model)")
    parser.add_argument("--mnist-ratio", type=float, nargs="+", default=[defaults.mnist_ratio])
    parser.add_argument("--learning-rate", type=float, nargs="+", default=[defaults.learning_rate])
    parser.add_argument("--epochs", type=int, nargs="+", default=[defaults.epochs])
    parser.add_argument("--keep-base", type=float, nargs="+", default=[defaults.keep_base])
    parser.add_argument("--freeze-norm", action="store_true", help="keep batch norm's statistics (FinetuneConfig)")
    parser.add_argument("--no-export", action="store_true", help="leave out the ONNX export (for sweeps)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    args = parser.parse_args()
    if args.source == "hwd1000" and args.part != "report":
        parser.error("hwd1000 is one writer held out from every choice: it has a report part alone")
    if not 0 <= args.goal_share <= 1:
        parser.error("--goal-share is a share of the errors, from 0 to 1")

    mnist = load_mnist("test")
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="digitlab-new-writer-") as scratch, StolenTime() as stolen:
        scratch = Path(scratch)
        for per_class in args.per_class:
            (digits, labels), (rest, rest_labels) = labelled_and_rest(args.source, args.part, per_class, args.seed)
            labelled, others = scratch / f"labelled{per_class}", scratch / f"rest{per_class}"
            write_folder(labelled, digits, labels, args.seed)
            write_folder(others, rest, rest_labels, args.seed + 1)
            before = scores(args.model, others, mnist)
            for ratio, rate, epochs, keep in itertools.product(args.mnist_ratio, args.learning_rate, args.epochs,
                                                               args.keep_base):
                config = FinetuneConfig(mnist_ratio=ratio, learning_rate=rate, epochs=epochs, keep_base=keep,
                                        seed=args.seed,
                                        freeze_norm=args.freeze_norm or defaults.freeze_norm)
                out = scratch / f"tuned{per_class}-{ratio}-{rate}-{epochs}-{keep}"
                cpu = time.process_time()
                result = finetune(labelled, out, args.model, config, export=False, quiet=True)
                trained, cpu = result.seconds, time.process_time() - cpu
                start = time.perf_counter()
                if not args.no_export:
                    export_onnx(out / "model.safetensors", out / "model.onnx")
                exported = time.perf_counter() - start
                after = scores(out / "model.safetensors", others, mnist)
                gap_goal = before["rest"] + (100 - before["rest"]) * args.goal_share
                rows.append({"per_class": per_class, "labelled": len(labels), "mnist_ratio": ratio,
                             "learning_rate": rate, "epochs": epochs, "keep_base": keep,
                             "freeze_norm": config.freeze_norm,
                             "before": before, "after": after,
                             "goal_rest": gap_goal, "finetune_seconds": round(trained, 1),
                             "finetune_cpu_seconds": round(cpu, 1),
                             "export_seconds": round(exported, 1), "load_average": os.getloadavg()[0],
                             "skipped": len(result.skipped),
                             # MNIST digits the base held out, as finetune scores them: what a sweep may choose on
                             "mnist_val": {k: v for k, v in result.metrics.items() if "mnist_val_accuracy" in k}})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"rows": rows, "source": args.source, "part": args.part, "goal_share": args.goal_share, "seed": args.seed, "hardware": hardware(),
                          "versions": versions(), "stolen": stolen.fraction}))
        return 0
    print(f"{args.source}, part {args.part}, seed {args.seed}, goal {args.goal_share:g} of its errors removed;"
          f" load average {load_before[0]:.1f} at the start; {hardware()}; "
          f"{versions()}; {stolen}\n")
    print("| labelled per digit | MNIST per image | rate | epochs | base kept | new writer before | after | goal | "
          "MNIST test before | after | finetune (CPU time) | + ONNX export | load |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        met = ("no errors to remove" if r["before"]["rest"] == 100  # a goal nothing can miss says nothing
               else "met" if r["after"]["rest"] >= r["goal_rest"] else "missed")
        print(f"| {r['per_class']} ({r['labelled']} images) | {r['mnist_ratio']:g} | {r['learning_rate']:g} | "
              f"{r['epochs']} | {r['keep_base']:g} | {r['before']['rest']:.2f} % ({r['before']['rest_images']}) | "
              f"**{r['after']['rest']:.2f} %** | {r['goal_rest']:.2f} % ({met}) | {r['before']['mnist']:.2f} % | "
              f"**{r['after']['mnist']:.2f} %** ({r['after']['mnist'] - r['before']['mnist']:+.2f}) | "
              f"{r['finetune_seconds']:.1f} s ({r['finetune_cpu_seconds']:.1f} s) | {r['export_seconds']:.1f} s | "
              f"{r['load_average']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
