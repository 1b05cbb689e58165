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
import time
from pathlib import Path

import numpy as np

from machine import StolenTime, hardware, versions

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def answers(recognizer, files, labels, temperature: float):
    """(confidence of the top digit, whether it is right) per file the preprocessing found a digit in, and how many
    files it found none in."""
    recognizer.temperature = temperature
    results = recognizer.predict(files, threshold=0.0)
    confidence, right, nothing = [], [], 0
    for result, label in zip(results, labels):
        if not result.digits:
            nothing += 1
            continue
        top = result.digits[0].top3[0]
        confidence.append(top[1])
        right.append(top[0] == int(label))
    return np.array(confidence), np.array(right, bool), nothing


def raw_mnist(recognizer, part: str, data_dir, temperature: float):
    from digitlab.training.handwriting import load_source

    images, labels = load_source("mnist", part, data_dir)
    recognizer.temperature = temperature
    probabilities = recognizer.probabilities(images.astype(np.float32) / 255)[:, recognizer.digit_outputs]
    return probabilities.max(1), probabilities.argmax(1) == labels


def measure(args):
    """The figures per set of digits and temperature, the fitted temperature and the model's calibration entry."""
    from digitlab.recognition.engine import load_engine
    from digitlab.recognition.predict import Recognizer
    from digitlab.training.calibrate import calibration_error, reliability, risk_coverage
    from digitlab.training.handwriting import SOURCES, drawn, picked
    from digitlab.training.handwriting_render import CASES

    recognizer = Recognizer(load_engine(args.model), threads=1)
    fitted = recognizer.temperature
    calibration = recognizer.engine.metadata.get("calibration")
    sets = {"MNIST test, raw 28x28": lambda t: raw_mnist(recognizer, args.part, args.data_dir, t)[:2] + (0,)}
    for source in SOURCES:
        digits, labels = picked(source, args.part, args.count, args.seed, args.data_dir)
        files = [(case, data) for case in CASES for _, data in drawn(source, case, digits, args.seed)]
        every_label = np.tile(labels, len(CASES))
        sets[f"{source}, all cases drawn"] = (lambda t, files=files, every_label=every_label:
                                              answers(recognizer, [d for _, d in files], every_label, t))
    figures = {}
    for name, measure in sets.items():
        for label, temperature in (("uncalibrated", 1.0), ("calibrated", fitted)):
            confidence, right, nothing = measure(temperature)
            total = len(confidence) + nothing
            curve = risk_coverage(confidence, right)
            at = {}
            for threshold in THRESHOLDS:
                answered = confidence >= threshold
                at[threshold] = {"answered": float(answered.sum() / total),
                                 "wrong": float((answered & ~right).sum() / max(answered.sum(), 1)),
                                 "right": float((answered & right).sum() / total)}
            figures[(name, label)] = {"ece": calibration_error(confidence, right), "count": total,
                                      "nothing_found": nothing, "thresholds": at,
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
    parser.add_argument("--json", action="store_true", help="the figures as one JSON object")
    args = parser.parse_args()

    from digitlab.recognition.predict import DEFAULT_THRESHOLD

    started = time.perf_counter()
    with StolenTime() as stolen:
        figures, fitted, calibration = measure(args)
    if args.json:
        print(json.dumps({f"{n} / {label}": f for (n, label), f in figures.items()}))
    else:
        print(f"hardware: {hardware()}\nversions: {versions()}\n{stolen}")
        print(f"model: {args.model or 'bundled'}; temperature {fitted:.4f} "
              f"({'fitted on ' + calibration['fitted_on'] if calibration else 'none fitted'}); part {args.part}; "
              f"{args.count} digits per source and case; default threshold {DEFAULT_THRESHOLD}\n")
        print("| digits | confidence | ECE | " + " | ".join(f"at {t:.2f}: right / wrong" for t in THRESHOLDS) + " |")
        print("|---|---|---:|" + "---:|" * len(THRESHOLDS))
        for (name, label), f in figures.items():
            cells = " | ".join(f"{100 * f['thresholds'][t]['right']:.1f} / {100 * f['thresholds'][t]['wrong']:.1f}"
                               for t in THRESHOLDS)
            print(f"| {name} ({f['count']:,}) | {label} | {100 * f['ece']:.2f} % | {cells} |")
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
        for label, colour in (("uncalibrated", "tab:orange"), ("calibrated", "tab:blue")):
            rows = figures[(name, label)]["reliability"]
            ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], "o-", color=colour,
                    label=f"{label} (ECE {100 * figures[(name, label)]['ece']:.1f} %)")
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
