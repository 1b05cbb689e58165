"""How far a confidence can be trusted: expected calibration error, reliability and risk-coverage, on MNIST's test
digits and on other writers' digits drawn as people hand them in, with the model's fitted temperature and without.

The temperature is fitted by ``digitlab calibrate`` on the validation split the model's training held out
(training/calibrate.py); this benchmark only measures it. The default threshold is read from the risk-coverage
table on the ``choose`` part; the ``report`` part is for reporting. Results: docs/handwriting.md, "Confidence".

    python benchmarks/calibration.py --part choose --count 60        # choosing the threshold
    python benchmarks/calibration.py --part report --count 100 --plot docs/images
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from machine import StolenTime, hardware, versions

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def found(recognizer, files, labels):
    """The MNIST-form image of the first digit the preprocessing found in each file, its label, and how many files
    it found none in: read once, then scored at every temperature."""
    images, kept, nothing = [], [], 0
    for result, label in zip(recognizer.predict(files, threshold=0.0), labels):
        if not result.digits:
            nothing += 1
            continue
        images.append(result.digits[0].image)
        kept.append(int(label))
    return np.stack(images), np.array(kept), nothing


def scored(recognizer, images, labels, temperature: float):
    """(confidence of the top digit, whether it is right) per image at ``temperature``, as the Recognizer reads."""
    recognizer.temperature = temperature
    probabilities = recognizer.probabilities(images)[:, recognizer.digit_outputs]
    return probabilities.max(1), probabilities.argmax(1) == labels


def measure(args):
    """The figures per set of digits and temperature, the fitted temperature and the model's calibration entry."""
    from digitlab.recognition.engine import load_engine
    from digitlab.recognition.predict import Recognizer
    from digitlab.training.calibrate import calibration_error, reliability, risk_coverage
    from digitlab.datasets.handwriting import SOURCES, drawn, load_source, picked
    from digitlab.datasets.handwriting_render import CASES

    recognizer = Recognizer(load_engine(args.model), threads=1)
    fitted = recognizer.temperature
    calibration = recognizer.engine.metadata.get("calibration")
    images, labels = load_source("mnist", args.part, args.data_dir)
    sets = {"MNIST test, raw 28x28": (images.astype(np.float32) / 255, labels, 0)}
    for source in SOURCES:
        if source not in ("mnist", "sklearn") and not os.environ.get("DIGITLAB_REALDATA"):
            continue   # the real handwriting folder is not configured
        digits, labels = picked(source, args.part, args.count, args.seed, args.data_dir)
        if not len(digits):   # a source with nothing in this part (hwd1000: report only)
            continue
        files = [data for case in CASES for _, data in drawn(source, case, digits, args.seed)]
        sets[f"{source}, all cases drawn"] = found(recognizer, files, np.tile(labels, len(CASES)))
    temperatures = {"uncalibrated": 1.0, "calibrated": fitted}
    temperatures.update({f"at T {t:.4f}": t for t in args.also_temperature or ()})
    figures = {}
    for name, (images, labels, nothing) in sets.items():
        for label, temperature in temperatures.items():
            confidence, right = scored(recognizer, images, labels, temperature)
            total = len(confidence) + nothing
            curve = risk_coverage(confidence, right)
            at = {}
            for threshold in THRESHOLDS:
                answered = confidence >= threshold
                at[threshold] = {"answered": float(answered.sum() / total),
                                 "wrong": float((answered & ~right).sum() / max(answered.sum(), 1)),
                                 "right": float((answered & right).sum() / total)}
            figures[(name, label)] = {"ece": calibration_error(confidence, right), "count": total,
                                      "nothing_found": nothing, "thresholds": at, "temperature": temperature,
                                      "reliability": reliability(confidence, right), "curve": curve}

    return figures, fitted, calibration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a .onnx or .safetensors model (default: the bundled one)")
    parser.add_argument("--part", choices=("choose", "report"), default="report")
    parser.add_argument("--count", type=int, default=100, help="digits per source and case (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", help="MNIST folder (default: $DIGITLAB_DATA)")
    parser.add_argument("--plot", metavar="DIR", help="write reliability.png and risk_coverage.png here")
    parser.add_argument("--also-temperature", type=float, nargs="+", metavar="T",
                        help="also score at these temperatures (e.g. an earlier fit), on the same images")
    parser.add_argument("--json", action="store_true", help="the figures as one JSON object")
    args = parser.parse_args()

    from digitlab.recognition.facts import DEFAULT_THRESHOLD

    load_before = os.getloadavg()
    started = time.perf_counter()
    with StolenTime() as stolen:
        figures, fitted, calibration = measure(args)
    if args.json:
        print(json.dumps({f"{n} / {label}": f for (n, label), f in figures.items()}))
    else:
        print(f"hardware: {hardware()}\nversions: {versions()}")
        print(f"load average (1, 5, 15 min) before: {' '.join(f'{v:.2f}' for v in load_before)}, after: "
              f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}; {stolen}")
        print(f"model: {args.model or 'bundled'}; temperature {fitted:.4f} "
              f"({'fitted on ' + calibration['fitted_on'] if calibration else 'none fitted'}); part {args.part}; "
              f"{args.count} digits per source and case; default threshold {DEFAULT_THRESHOLD}\n")
        print("| digits | confidence | ECE | " + " | ".join(f"at {t:.2f}: right / wrong" for t in THRESHOLDS) + " |")
        print("|---|---|---:|" + "---:|" * len(THRESHOLDS))
        for (name, label), f in figures.items():
            cells = " | ".join(f"{100 * f['thresholds'][t]['right']:.1f} / {100 * f['thresholds'][t]['wrong']:.1f}"
                               for t in THRESHOLDS)
            named = label if label.startswith("at T") else f"{label} (T {f['temperature']:.4f})"
            print(f"| {name} ({f['count']:,}) | {named} | {100 * f['ece']:.2f} % | {cells} |")
        print("\nat t: right = answered and right, as a share of all images; wrong = wrong, as a share of the "
              "answers given. Images the preprocessing found nothing in count as not answered.")
        print(f"took {time.perf_counter() - started:.0f} s")
    if args.plot:
        plot(figures, Path(args.plot))


def plot(figures: dict, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from digitlab.files import atomic_write

    folder.mkdir(parents=True, exist_ok=True)
    names = sorted({name for name, _ in figures})
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
        labels = [label for n, label in figures if n == name]
        for label, colour in zip(labels, ("tab:orange", "tab:blue", "tab:green", "tab:red", "tab:purple")):
            f = figures[(name, label)]
            named = label if label.startswith("at T") else f"{label}, T {f['temperature']:.3g}"
            ax.plot([r["confidence"] for r in f["reliability"]], [r["accuracy"] for r in f["reliability"]], "o-",
                    color=colour, label=f"{named} (ECE {100 * f['ece']:.1f} %)")
        ax.set(title=name, xlabel="confidence", ylabel="accuracy", xlim=(0, 1.02), ylim=(0, 1.02))
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    atomic_write(folder / "reliability.png", lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name in names:
        curve = figures[(name, "calibrated")]["curve"]
        ax.plot([p["coverage"] for p in curve], [100 * p["risk"] for p in curve], label=name)
    ax.set(xlabel="share of digits answered (coverage)", ylabel="% of answers wrong (risk)",
           title="risk-coverage, calibrated", xlim=(0.5, 1.0))
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(folder / "risk_coverage.png", lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)


if __name__ == "__main__":
    main()
