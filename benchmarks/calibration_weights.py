"""How much the other writers should weigh when the temperature is fitted: for each share, the temperature
``digitlab calibrate --other-writers`` would fit, and the calibration error it gives on the ``choose`` part.

The fit sees what ``calibrate`` sees (the model's validation split, and the other writers' ``choose`` digits drawn with
``calibrate.OTHER_SEED``); the errors are read on the drawings the other benchmarks choose on (``choose`` part, seed
0), so a share is judged on drawings it was not fitted on, and never on the ``report`` part. Each set is read once,
its logits kept, so a share costs one fit. Results: docs/handwriting.md, "Confidence".

    python benchmarks/calibration_weights.py --model runs/x/model.safetensors   # a checkpoint with a validation split
    python benchmarks/calibration_weights.py --fit-seed 0 --count 100 --check-seed 1 --check-count 300   # reversed
"""

from __future__ import annotations

import argparse
import os
import time

from machine import StolenTime, hardware, versions


def main() -> None:
    import torch

    from digitlab.training import calibrate, checkpoint
    from digitlab.training.evaluate import infer
    from digitlab.datasets.handwriting import load_source

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a .safetensors checkpoint trained with --validation-split (default: the "
                        "bundled one)")
    parser.add_argument("--source", default="sklearn", help="the other writers (default: %(default)s)")
    parser.add_argument("--count", type=int, default=calibrate.OTHER_COUNT,
                        help="other writers' digits the fit draws in every case (default: %(default)s)")
    parser.add_argument("--fit-seed", type=int, default=calibrate.OTHER_SEED,
                        help="drawing seed of the other writers the fit sees (default: %(default)s, as calibrate)")
    parser.add_argument("--check-seed", type=int, default=0,
                        help="drawing seed of the digits the errors are read on (default: %(default)s)")
    parser.add_argument("--check-count", type=int, default=100,
                        help="digits per source and case the errors are read on (default: %(default)s)")
    parser.add_argument("--weights", type=float, nargs="+", default=(0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0),
                        help="the other writers' shares of the fit to try")
    parser.add_argument("--data-dir", help="MNIST folder (default: $DIGITLAB_DATA)")
    args = parser.parse_args()

    load_before = os.getloadavg()
    started = time.perf_counter()
    with StolenTime() as stolen:
        model, meta = checkpoint.load(args.model)
        classes = [str(c) for c in meta["classes"]]
        val = calibrate.held_out(meta, args.data_dir)
        with torch.no_grad():
            fit_sets = [(infer(model, val.images), val.labels)]
            calibrate.check_other_writers(args.source, args.count)
            images, digits, _ = calibrate.drawn_choose(args.source, args.count, args.fit_seed, args.data_dir)
            fit_sets.append((infer(model, images), digits))
            checks = {}
            raw, labels = load_source("mnist", "choose", args.data_dir)
            checks["MNIST test, raw 28x28"] = (infer(model, torch.from_numpy(raw)), torch.from_numpy(labels))
            for source in ("mnist", args.source):
                images, digits, _ = calibrate.drawn_choose(source, args.check_count, args.check_seed, args.data_dir)
                checks[f"{source}, all cases drawn"] = (infer(model, images), digits)

        logits = torch.cat([lg for lg, _ in fit_sets])
        labels = torch.cat([lb for _, lb in fit_sets])
        targets = torch.tensor([classes.index(str(int(d))) for d in labels])
        sizes = [len(lb) for _, lb in fit_sets]
        rows = []
        for weight in args.weights:
            shares = torch.cat([torch.full((sizes[0],), (1 - weight) / sizes[0]),
                                torch.full((sizes[1],), weight / sizes[1])])
            temperature = calibrate.fit_temperature(logits, targets, shares)
            errors = {}
            for name, (lg, lb) in checks.items():
                confidence, best = calibrate.digit_confidence(lg, classes, temperature)
                errors[name] = calibrate.calibration_error(confidence, best == lb.numpy())
            rows.append((weight, temperature, errors))

    print(f"model: {args.model or 'bundled'}; fitted on the validation split ({sizes[0]}) and {args.source} "
          f"choose digits drawn with seed {args.fit_seed} ({sizes[1]} drawings of {args.count} digits); "
          f"errors on the choose part drawn with seed {args.check_seed} ({args.check_count} digits per case); "
          f"{time.perf_counter() - started:.0f} s")
    print(f"hardware: {hardware()}\nversions: {versions()}")
    print(f"load average (1, 5, 15 min) before: {' '.join(f'{v:.2f}' for v in load_before)}, after: "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}; {stolen}\n")
    names = list(rows[0][2])
    print("| other writers' share | temperature | " + " | ".join(f"ECE {n} ({len(checks[n][1]):,})" for n in names)
          + " |")
    print("|---:|---:|" + "---:|" * len(names))
    for weight, temperature, errors in rows:
        print(f"| {weight:g} | {temperature:.4f} | " + " | ".join(f"{100 * errors[n]:.2f} %" for n in names) + " |")
    worst = min(rows, key=lambda row: max(row[2].values()))
    print(f"\nlowest worst-set error: share {worst[0]:g} (T {worst[1]:.4f}, {100 * max(worst[2].values()):.2f} %)")


if __name__ == "__main__":
    main()
