"""Real handwriting by other writers, drawn the ways people hand digits in, read by digitlab: right, refused, right
when forced, and a plain reference pipeline on the same network, per source and case, beside raw MNIST.

The sources and cases are those of ``digitlab.datasets.handwriting`` (MNIST test, scikit-learn's 8x8 digits, and
with ``--realdata-dir`` or DIGITLAB_REALDATA the Chars74K and HwD-1000 digits of ``writers.py``, split by writer) and
``digitlab.datasets.handwriting_render`` (photo, small-on-page, tight-crop, small-scan, binary, fills-box, thick,
thin, blocky). Report on the ``report`` part; choose settings and recipes on ``choose``. Results: docs/handwriting.md.

    python benchmarks/other_writers.py --count 100                      # bundled model, report part
    python benchmarks/other_writers.py --count 100 --via-cli            # the files read by `digitlab predict --json`
    python benchmarks/other_writers.py --cases tight-crop --sources sklearn --save-to /tmp/crops --count 20
    python benchmarks/other_writers.py --count 100 --letters --realdata-dir ../shared/realdata   # + real letters
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from machine import StolenTime, hardware, versions


def save_files(folder: Path):
    """A ``keep`` for ``evaluate`` that writes every drawn file under folder/source/case/."""
    from digitlab.files import atomic_write

    def keep(source: str, case: str, files: list[tuple[str, bytes]]) -> None:
        for name, data in files:
            atomic_write(folder / source / case / name, lambda tmp, data=data: Path(tmp).write_bytes(data))
    return keep


def read_via_cli(model: str | None, threshold: float | None):
    """A reader that writes the files into a temporary folder and reads them with ``digitlab predict DIR
    --recursive --json``, as a person would, parsing its JSON lines."""
    from digitlab.datasets.handwriting import answer_of

    def read(files: list[tuple[str, bytes]]) -> list:
        with tempfile.TemporaryDirectory(prefix="digitlab-other-writers-") as folder:
            for name, data in files:
                (Path(folder) / name).write_bytes(data)
            command = ([sys.executable, "-m", "digitlab", "predict", folder, "--recursive", "--json"]
                       + (["--threshold", str(threshold)] if threshold is not None else [])
                       + (["--model", model] if model else []))
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode not in (0, 1):   # 1: some inputs unreadable, still answered line by line
                raise SystemExit(f"digitlab predict failed ({done.returncode}): {done.stderr.strip()}")
            results = {Path(r["path"]).name: r for r in map(json.loads, done.stdout.splitlines())}
        return [answer_of(results.get(name, {"error": "no answer from digitlab predict"})) for name, _ in files]
    return read


def table(rows: list[dict]) -> str:
    lines = ["| source | case | images | right | refused | right when forced | reference | refused as |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        bold = "**" if r["case"] == "all cases" else ""
        reasons = ", ".join(f"{kind} {n}" for kind, n in r["refusals"].items()) or "-"
        lines.append(f"| {bold}{r['source']}{bold} | {bold}{r['case']}{bold} | {r['images']:,} | "
                     f"{r['right']:.1f} % | {r['refused']:.1f} % | {r['forced']:.1f} % | {r['reference']:.1f} % | "
                     f"{reasons} |")
    return "\n".join(lines)


def letters_table(rows: list[dict]) -> str:
    """Real letters refused, pooled over the cases: one line per source, kind and shape."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["source"], r["kind"], r["digit_shaped"]), []).append(r)
    lines = ["| letters | kind | shaped like a digit | images | refused |", "|---|---|---|---:|---:|"]
    for (source, kind, shaped), found in sorted(groups.items(), key=lambda item: (item[0][2], item[0])):
        images = sum(r["images"] for r in found)
        refused = sum(r["refused"] * r["images"] for r in found) / max(1, images)
        lines.append(f"| {source} | {kind} | {'yes' if shaped else 'no'} | {images:,} | {refused:.1f} % |")
    return "\n".join(lines)


def main() -> int:
    from digitlab.recognition.engine import load_engine
    from digitlab.recognition.predict import Recognizer
    from digitlab.datasets.handwriting import PARTS, SOURCES, combined, evaluate, evaluate_letters, load_source
    from digitlab.datasets.writers import LETTER_SOURCES
    from digitlab.datasets.handwriting_render import CASES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint or .onnx export (default: the bundled model)")
    parser.add_argument("--count", type=int, default=100, help="digits per source and case (default 100)")
    parser.add_argument("--part", choices=PARTS, default="report", help="which part of each source (default report)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES))
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--threshold", type=float, default=None,
                        help="confidence threshold for 'right' (default: the model's)")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON object instead of tables")
    parser.add_argument("--save-to", metavar="DIR", help="also write every drawn file under DIR/source/case/")
    parser.add_argument("--via-cli", action="store_true",
                        help="read the files with `digitlab predict DIR --recursive --json` instead of the Python API")
    parser.add_argument("--data-dir", help="MNIST folder (default: $DIGITLAB_DATA or the cache)")
    parser.add_argument("--realdata-dir", help="real handwriting by other writers (default: $DIGITLAB_REALDATA); "
                        "its digit sources are read only when it is set")
    parser.add_argument("--letters", action="store_true", help="also read real handwritten letters of the part "
                        "(they should be refused)")
    args = parser.parse_args()
    if args.count < 1:
        parser.error("--count must be at least 1")
    if args.save_to and Path(args.save_to).exists() and any(Path(args.save_to).iterdir()):
        parser.error(f"--save-to {args.save_to}: the folder is not empty; choose a new or empty one")

    if args.realdata_dir:
        os.environ["DIGITLAB_REALDATA"] = args.realdata_dir
    if not os.environ.get("DIGITLAB_REALDATA"):
        args.sources = [s for s in args.sources if s in ("mnist", "sklearn")]
    recognizer = Recognizer(load_engine(args.model), threshold=args.threshold)
    read = read_via_cli(args.model, args.threshold) if args.via_cli else None
    args.threshold = recognizer.threshold  # reported as read
    keep = save_files(Path(args.save_to)) if args.save_to else None
    mnist, labels = load_source("mnist", args.part, args.data_dir)
    raw = recognizer.probabilities(mnist.astype(np.float32) / 255)[:, recognizer.digit_outputs].argmax(axis=1)
    raw_right = 100 * float((raw == labels).mean())

    load_before = os.getloadavg()
    start = time.perf_counter()
    rows = []
    with StolenTime() as stolen:
        for source in args.sources:
            found = evaluate(recognizer, source, args.cases, args.part, args.count, args.seed, args.data_dir,
                             read=read, keep=keep)
            found = [r for r in found if r["images"]]   # a source with nothing in this part (hwd1000: report only)
            rows += found + ([combined(found)] if len(found) > 1 else [])
        letters = [row for source in LETTER_SOURCES for row in evaluate_letters(
            recognizer, source, args.cases, args.part, args.count, args.seed, read=read)] if args.letters else []
    elapsed = time.perf_counter() - start
    per_source = [r for r in rows if r["case"] != "all cases"]
    if len(args.sources) > 1:
        rows.append(combined(per_source))

    arch = recognizer.engine.metadata.get("arch", "?")
    reader = "`digitlab predict DIR --recursive --json`" if args.via_cli else "the Python API (Recognizer.predict)"
    if args.json:
        print(json.dumps({"model": args.model or "bundled", "arch": arch, "part": args.part, "seed": args.seed,
                          "count": args.count, "threshold": args.threshold, "via_cli": args.via_cli,
                          "raw_mnist_right": raw_right, "seconds": elapsed,
                          "rows": [{k: v for k, v in r.items() if k != "answers"} for r in rows],
                          "letters": letters}, indent=1))
        return 0
    print(f"model: {args.model or 'bundled'} ({arch}); part {args.part}, {args.count} digits per source and case, "
          f"seed {args.seed}; read by {reader} at threshold {args.threshold}; {elapsed:.0f} s")
    print(f"hardware: {hardware()}\nversions: {versions()}")
    print(f"load average (1, 5, 15 min) before: {' '.join(f'{v:.2f}' for v in load_before)}, after: "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}; {stolen}")
    print()
    print(f"raw MNIST test digits as 28x28 ({args.part} part, {len(labels):,}): {raw_right:.2f} % right (argmax)")
    print()
    print(table(rows))
    print()
    if letters:
        print()
        print(letters_table(letters))
    print("right: answered correctly at the threshold; right when forced: the most likely of the ten digits for what "
          "digitlab's preprocessing found (nothing found counts wrong); reference: the plain pipeline's 28x28 of the "
          "same file through the same network.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
