"""The reading job of ``digitlab``: ``predict`` recognises the digit (or the number) in image files and folders.

    digitlab predict samples/ photo.jpg
    digitlab predict --multi --json house-number.jpg
    digitlab predict --explain explain.png my-seven.png
    digitlab predict --model model.onnx photo.jpg        # onnxruntime, PyTorch never imported

Torch-free: a .onnx model runs on onnxruntime, and so does the bundled model when PyTorch is not installed. A file
that cannot be read is reported on its own line with the reason; the others still run, and the exit code is 1 when
any failed (2 for bad arguments, from ``cli.main``).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def add_predict_parsers(subparsers) -> None:
    import inspect

    from digitlab.recognition.engine import BACKENDS  # light: neither torch nor onnxruntime is imported here
    from digitlab.recognition.predict import DEFAULT_THRESHOLD, UNCALIBRATED_THRESHOLD, Recognizer
    from digitlab.recognition.preprocess import POLARITIES

    p = subparsers.add_parser("predict", help="recognise the digit (or, with --multi, the number) in images")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders")
    p.add_argument("--recursive", "-r", action="store_true", help="also look in sub-folders")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON object per line (default: a table)")
    output.add_argument("--csv", action="store_true", help="CSV with a header row (default: a table)")
    p.add_argument("--multi", action="store_true", help="read several digits left to right (e.g. '2026')")
    p.add_argument("--threshold", type=float, default=None,
                   help=f"answer only when the top probability reaches this (default: {DEFAULT_THRESHOLD} for a "
                        f"calibrated model, as the bundled one is; {UNCALIBRATED_THRESHOLD} for one without a "
                        "fitted temperature)")
    p.add_argument("--polarity", choices=POLARITIES, default=POLARITIES[0],
                   help="ink darker or lighter than the paper (default: %(default)s, detect it)")
    p.add_argument("--explain", metavar="OUT.png", help="write a figure of the original, the 28x28 the model saw "
                   "and its probabilities (one image only; default: no figure)")
    p.add_argument("--model", metavar="FILE", help="a .safetensors checkpoint or a .onnx export "
                   "(default: the bundled model)")
    p.add_argument("--backend", choices=tuple(BACKENDS), help="what runs the model (default: onnx for a .onnx file, "
                   "torch for a checkpoint; for the bundled model torch when installed, else onnx)")
    p.add_argument("--batch-size", type=int, default=inspect.signature(Recognizer).parameters["batch_size"].default,
                   help="images per model call (default: %(default)s)")
    p.set_defaults(handler=cmd_predict)


def cmd_predict(args) -> int:
    import cv2

    from digitlab.recognition.engine import load_engine
    from digitlab.recognition.predict import Recognizer

    cv2.setNumThreads(1)  # process-wide: the Recognizer's threads already work on several images side by side

    inputs, unread = collect_inputs(args.paths, args.recursive)  # unread: (name, why it is not read)
    if args.explain and len(inputs) != 1:
        raise ValueError(f"--explain draws one image, but the paths name {len(inputs)}")
    recognizer = Recognizer(load_engine(args.model, args.backend), threshold=args.threshold, polarity=args.polarity,
                            batch_size=args.batch_size)
    results = recognizer.iter_predict(inputs, multi=args.multi)
    if args.explain:
        results = list(results)  # one image, kept for the figure
    failed = write_results(results, unread, "json" if args.json else "csv" if args.csv else "table",
                           width=max((len(str(p)) for p in [*inputs, *(name for name, _ in unread)]), default=4))
    if args.explain and failed == 0:
        explain(results[0], args.explain)
    if failed:
        print(f"{failed} of {len(inputs) + len(unread)} inputs could not be read", file=sys.stderr)
    return 1 if failed else 0


# --- helpers ------------------------------------------------------------------------------------------------------

def collect_inputs(paths: list[str], recursive: bool) -> tuple[list[str], list[tuple[str, str]]]:
    """Files named directly (whatever their suffix) and the image files inside named folders, in sorted order;
    plus what cannot be read and why: folders holding no image files at all, and entries of a folder named like an
    image that are no file (a folder called x.png, a FIFO, a symbolic link to nothing or to itself), which a user
    would otherwise never learn were passed over."""
    files, unread = [], []
    for name in paths:
        path = Path(name)
        if not path.is_dir():
            files.append(name)
            continue
        named = sorted(f for f in (path.rglob("*") if recursive else path.iterdir())
                       if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
        found = [str(f) for f in named if f.is_file()]
        unread += [(str(f), _not_a_file(f)) for f in named if not f.is_file()]
        if found:
            files.extend(found)
        elif not named:
            unread.append((name, "folder holds no image files (try --recursive)"))
    return files, unread


def _not_a_file(path: Path) -> str:
    if path.is_symlink() and not path.exists():
        return "a symbolic link to nothing (or to itself), not an image file"
    if path.is_dir():
        return "is a folder, not an image file"
    return "not a regular file (a FIFO, socket or device): not read"


def write_results(results, unread: list[tuple[str, str]], style: str, width: int) -> int:
    """Print each result as it comes in ``style`` ("table", "json", "csv"); return how many inputs failed."""
    from digitlab.recognition.predict import Prediction

    failed = 0
    writer = _STYLES[style](sys.stdout, width)
    not_read = (Prediction(name, error=why) for name, why in unread)
    for result in [*not_read, *results] if unread else results:
        failed += result.error is not None
        writer(result)
        sys.stdout.flush()
    return failed


def _json_writer(out, width):
    return lambda result: print(json.dumps(result.to_dict()), file=out)


def _csv_writer(out, width):
    rows = csv.writer(out, lineterminator="\n")
    rows.writerow(["path", "digit", "number", "confidence", "top3", "digits", "boxes", "reason", "error"])

    def write(result):
        digits = " ".join("?" if d.digit is None else str(d.digit) for d in result.digits)
        top3 = " ".join(f"{d}:{p:.4f}" for d, p in result.digits[0].top3) if len(result.digits) == 1 else ""
        boxes = " ".join("x".join(str(v) for v in d.box) for d in result.digits)
        number = _blank(result.number) if result.multi else ""
        confidence = "" if result.confidence is None else f"{result.confidence:.6f}"
        rows.writerow([result.source, _blank(result.digit), number, confidence, top3, digits, boxes,
                       result.reason or "", result.error or ""])
    return write


def _table_writer(out, width):
    width = min(max(width, 4), 60)
    print(f"{'path':<{width}}  {'answer':>6}  {'conf':>5}  top-3 / note", file=out)

    def write(result):
        if result.error:
            answer, confidence, note = "-", "", f"error: {result.error}"
        else:
            answer = (result.number if result.multi else _blank(result.digit)) or "?"
            confidence = "" if result.confidence is None else f"{result.confidence:.0%}"
            top = "  ".join(f"{d} {p:.0%}" for d, p in result.digits[0].top3) if len(result.digits) == 1 else \
                " ".join("?" if d.digit is None else str(d.digit) for d in result.digits)
            note = top + (f"  ({result.reason})" if result.reason else "")
        path = result.source if result.source.isprintable() else repr(result.source)[1:-1]  # one line per file
        path = path if len(path) <= width else "..." + path[-(width - 3):]
        print(f"{path:<{width}}  {answer:>6}  {confidence:>5}  {note}", file=out)
    return write


_STYLES = {"table": _table_writer, "json": _json_writer, "csv": _csv_writer}


def _blank(value) -> str:
    return "" if value is None else str(value)


def explain(prediction, out_path: str) -> None:
    from digitlab.recognition.explain import write_explanation
    from digitlab.recognition.decode import load_image

    original, _ = load_image(prediction.source, work_side=1024)
    write_explanation(prediction, original, out_path)
    print(f"wrote {out_path}", file=sys.stderr)

