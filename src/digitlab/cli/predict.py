"""The reading job of ``digitlab``: ``predict`` recognises the digit (or the number) in image files and folders.

    digitlab predict samples/ photo.jpg
    digitlab predict --multi --json house-number.jpg
    digitlab predict --explain explain.png my-seven.png
    digitlab predict --model model.onnx photo.jpg        # onnxruntime, PyTorch never imported
    digitlab predict --jobs 8 --out answers.jsonl scans/ # 8 worker processes; Ctrl-C, then --resume goes on
    digitlab predict --files-from list.txt --out a.jsonl # the paths listed in a file, one per line

A job of more than one chunk of files runs in ``--jobs`` worker processes (``recognition.parallel``), one per CPU
by default; ``--out`` writes the answers to a file in chunks that survive Ctrl-C (``recognition.outfile``).
Torch-free: a .onnx model runs on onnxruntime, and so does the bundled model when PyTorch is not installed. A file
that cannot be read is reported on its own line with the reason; the others still run, and the exit code is 1 when
any failed (2 for bad arguments, from ``cli.main``).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

# The longest line a --files-from list may have: above any path a file system takes (Linux's PATH_MAX is 4,096
# bytes) or a URI --ray reads, with room to spare.
MAX_LIST_LINE = 65_536


def add_predict_parsers(subparsers) -> None:
    p = subparsers.add_parser("predict", help="recognise the digit (or, with --multi, the number) in images",
                              fill=_options)
    p.set_defaults(handler=cmd_predict)


def _options(p) -> None:
    """predict's options, added when predict is the command: their defaults come from the Recognizer, whose module
    imports numpy and OpenCV, which no other command (`digitlab serve` above all) should wait for."""
    import inspect

    from digitlab.cli.numbers import whole_number
    from digitlab.recognition.backends import BACKENDS
    from digitlab.recognition.facts import DEFAULT_THRESHOLD, POLARITIES, UNCALIBRATED_THRESHOLD
    from digitlab.recognition.predict import Recognizer
    from digitlab.threads import available_cpus

    p.add_argument("paths", nargs="*", metavar="PATH", help="image files and folders")
    p.add_argument("--files-from", metavar="LIST", help="also read the paths in LIST, a text file with one path (or, "
                   "with --ray, a URI) per line; '-' reads them from standard input (default: none)")
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
    p.add_argument("--backend", choices=tuple(BACKENDS), help="what runs the model (default: onnx for a .onnx file "
                   "and for a checkpoint with its own export beside it, as the bundled model has; else torch)")
    p.add_argument("--int8", action="store_true", help="run the bundled model's int8 export on onnxruntime: faster, "
                   "its MNIST test accuracy within 0.05 points (docs/serving.md, \"int8\"; default: fp32)")
    p.add_argument("--batch-size", type=whole_number(),
                   default=inspect.signature(Recognizer).parameters["batch_size"].default,
                   help="images per model call (default: %(default)s)")
    p.add_argument("--jobs", "-j", type=whole_number(), default=available_cpus(),
                   help="worker processes, each with its own model and one CPU (default: %(default)s, the CPUs "
                        "this process may use)")
    p.add_argument("--unordered", action="store_true",
                   help="give each answer as soon as it is ready, not in input order (default: input order)")
    p.add_argument("--out", metavar="FILE", help="write the answers to FILE instead of printing them: JSON Lines "
                   "(.jsonl, or --json), CSV (.csv, or --csv) or Parquet (.parquet, needs pyarrow), in chunks "
                   "that are on disk as they are written (default: print them)")
    p.add_argument("--resume", action="store_true", help="with --out: skip the inputs the file already holds and "
                   "add the rest (default: refuse to touch an existing file)")
    p.add_argument("--overwrite", action="store_true", help="with --out: replace an existing file (default: never)")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="recognise on a Ray cluster with Ray Data (pip install 'digitlab[cluster]'), writing Parquet "
                        "files, with the columns of --out x.parquet, into the folder --out DIR; ADDRESS as ray.init "
                        "takes it (default: $RAY_ADDRESS, else a Ray on this machine). Put the paths before --ray, "
                        "or write --ray=ADDRESS")


def cmd_predict(args) -> int:
    if args.files_from:
        args.paths = [*args.paths, *read_list(args.files_from)]
    if not args.paths:
        raise ValueError("name the images: PATH ... and/or --files-from LIST")
    if args.int8:
        from digitlab.recognition.backends import bundled_int8

        args.model, args.backend = bundled_int8(args.model, args.backend), "onnx"
    if args.ray is not None:
        return predict_on_ray(args)

    inputs, unread = collect_inputs(args.paths, args.recursive)  # unread: (name, why it is not read)
    check_options(args, len(inputs))
    style = "json" if args.json else "csv" if args.csv else None
    out = None
    if args.out:
        from digitlab.recognition.outfile import ResultsFile

        out = ResultsFile(args.out, style, resume=args.resume, overwrite=args.overwrite)
    done = out.done if out else set()
    todo = [path for path in inputs if path not in done]
    predictions = recognise(todo, args)
    if args.explain:
        predictions = list(predictions)  # one image, kept for the figure
    results = itertools.chain((r for r in not_read(unread) if r.source not in done), predictions)

    try:
        if out is None:
            failed = write_results(results, style or "table",
                                   width=max((len(str(p)) for p in [*inputs, *(n for n, _ in unread)]), default=4))
        else:
            failed = write_to_file(results, out)
    except KeyboardInterrupt:
        kept = f": {out.path} holds the {len(done) + out.written} answers finished so far; run the same command " \
               f"with --resume to go on" if out else ""
        print(f"digitlab predict: interrupted{kept}", file=sys.stderr)
        return 130
    if out is not None:
        skipped = f" ({len(inputs) - len(todo)} inputs it held already were skipped)" if done else ""
        print(f"wrote {out.written} answers to {out.path}{skipped}", file=sys.stderr)
    if args.explain and failed == 0:
        explain(predictions[0], args.explain)
    if failed:
        print(f"{failed} of {len(todo) + len(unread)} inputs could not be read", file=sys.stderr)
    return 1 if failed else 0


def check_options(args, inputs: int) -> None:
    """Refuse options that do not fit together, before any image is read: --explain draws one of ``inputs`` images
    and needs somewhere to write it, --resume and --overwrite need --out, and --jobs at least one process."""
    if args.explain and inputs != 1:
        raise ValueError(f"--explain draws one image, but the paths name {inputs}")
    if args.explain:
        from digitlab.recognition.explain import check_destination

        check_destination(args.explain)  # before any image is read: the figure would have nowhere to go
    if (args.resume or args.overwrite) and not args.out:
        raise ValueError("--resume and --overwrite are about an output file: name it with --out FILE")
    if args.jobs < 1:
        raise ValueError(f"--jobs must be at least 1, not {args.jobs}")


def recognise(todo: list[str], args):
    """The predictions for the files ``todo``, as they come: in ``--jobs`` worker processes when the files make more
    than one chunk (in input order unless ``--unordered``), else in this process; without ``--multi``, a refusal
    for several digits names ``--multi``."""
    from digitlab.recognition.parallel import CHUNK, WorkerSettings, load_single_threaded, recognise_files

    settings = WorkerSettings(args.model, args.backend, args.threshold, args.polarity, args.batch_size, args.multi)
    workers = min(args.jobs, -(-len(todo) // CHUNK))  # no more processes than chunks of files
    if workers > 1 and not args.explain:
        _check_extra(settings)  # the parent never loads the model; say now what the workers would fail on
        predictions = recognise_files(todo, workers, settings, ordered=not args.unordered)
    else:  # one process is enough: no worker to start
        predictions = load_single_threaded(settings).iter_predict(todo, multi=args.multi)
    return predictions if args.multi else map(suggest_multi, predictions)


def predict_on_ray(args) -> int:
    """``--ray``: the paths read by Ray Data, recognised by actors with the ONNX model, written as Parquet files into
    the folder ``--out``. Per-image errors are rows with ``error`` set; the job itself goes on."""
    if args.ray and "://" not in args.ray and Path(args.ray).exists():
        raise ValueError(f"--ray took {args.ray!r} as the cluster's address; put the paths before --ray, or write "
                         f"--ray=ADDRESS")
    for option in ("explain", "resume", "unordered", "json", "csv"):  # Parquet: typed, and the same as --out's
        if getattr(args, option):
            raise ValueError(f"--{option} is not for --ray")
    if args.backend == "torch":
        raise ValueError("--ray runs the ONNX model (no PyTorch on the cluster); export a checkpoint with "
                         "`digitlab export CKPT --onnx model.onnx`")
    if not args.out:
        raise ValueError("--ray writes its answers as files into a folder: name it with --out DIR")
    out = args.out if "://" in args.out else str(Path(args.out).resolve())
    if "://" not in out and Path(out).exists() and (not Path(out).is_dir() or any(Path(out).iterdir())) \
            and not args.overwrite:
        raise ValueError(f"{args.out} exists and is not an empty folder: --overwrite to replace what it holds")
    try:
        import ray
    except ModuleNotFoundError:
        from digitlab.errors import UsageError

        raise UsageError("digitlab: error: --ray needs Ray: pip install 'digitlab[cluster]'") from None
    from digitlab.recognition.cluster import read_images, recognise_dataset

    if not ray.is_initialized():
        import logging

        ray.init(address=args.ray or None, logging_level=logging.WARNING, log_to_driver=False)
    paths = [p if "://" in p else str(Path(p).resolve()) for p in args.paths]
    answers = recognise_dataset(read_images(paths), model=args.model, threshold=args.threshold,
                                polarity=args.polarity, multi=args.multi)
    answers.write_parquet(out, **({"mode": ray.data.SaveMode.OVERWRITE} if args.overwrite else {}))
    print(f"wrote the answers into {args.out}", file=sys.stderr)
    return 0


def _check_extra(settings) -> None:
    from digitlab.recognition.backends import backend_for, torch_installed

    if backend_for(settings.model, settings.backend) == "torch" and not torch_installed():
        raise ModuleNotFoundError("No module named 'torch'", name="torch")


# --- helpers ------------------------------------------------------------------------------------------------------

def collect_inputs(paths: list[str], recursive: bool) -> tuple[list[str], list[tuple[str, str]]]:
    """Files named directly (whatever their suffix) and the image files inside named folders, in sorted order;
    plus what cannot be read and why: folders holding no image files at all, and entries of a folder named like an
    image that are no file (a folder called x.png, a FIFO, a symbolic link to nothing or to itself), which a user
    would otherwise never learn were passed over."""
    from digitlab.recognition.facts import SUFFIXES

    files, unread = [], []
    for name in paths:
        path = Path(name)
        if not path.is_dir():
            files.append(name)
            continue
        named = sorted(f for f in (path.rglob("*") if recursive else path.iterdir())
                       if f.suffix.lower() in SUFFIXES and not f.name.startswith("."))
        found = [str(f) for f in named if f.is_file()]
        unread += [(str(f), _not_a_file(f)) for f in named if not f.is_file()]
        if found:
            files.extend(found)
        elif not named:
            unread.append((name, "folder holds no image files (try --recursive)"))
    return files, unread


def read_list(name: str) -> list[str]:
    """The paths in a list file, one per line as written (no globbing or quoting; blank lines skipped), so that an
    archive's index or a `find` output can be handed over without the shell's limit on arguments. ``-`` is
    standard input. A list that cannot be read is a usage error (exit 2); a listed path that cannot be read is a
    per-file error, as on the command line. Lines are read at most ``MAX_LIST_LINE`` bytes at a time, so a file that
    is no list (``/dev/zero``, a binary with no line breaks) is refused at once instead of filling memory."""
    from contextlib import nullcontext

    from digitlab.errors import one_line

    paths = []
    try:
        with nullcontext(getattr(sys.stdin, "buffer", sys.stdin)) if name == "-" else open(name, "rb") as source:
            number = 0
            while line := source.readline(MAX_LIST_LINE + 1):  # bytes from a file, str from a replaced stdin
                number += 1
                if len(line) > MAX_LIST_LINE:
                    raise ValueError(f"the list {name}, line {number}: longer than {MAX_LIST_LINE:,} bytes, longer "
                                     f"than any path: not a list of paths, one per line")
                path = (line.decode("utf-8") if isinstance(line, bytes) else line).rstrip("\n").rstrip("\r")
                if path.strip():
                    paths.append(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the list {name}: {one_line(exc)}") from None
    if not paths:
        raise ValueError(f"the list {name} names no paths")
    return paths


def _not_a_file(path: Path) -> str:
    if path.is_symlink() and not path.exists():
        return "a symbolic link to nothing (or to itself), not an image file"
    if path.is_dir():
        return "is a folder, not an image file"
    return "not a regular file (a FIFO, socket or device): not read"


def write_results(results, style: str, width: int) -> int:
    """Print each result as it comes in ``style`` ("table", "json", "csv"); return how many inputs failed."""
    from digitlab.recognition.formats import STYLES

    failed = 0
    writer = STYLES[style](sys.stdout, width)
    for result in results:
        failed += result.error is not None
        writer(result)
        sys.stdout.flush()
    return failed


def write_to_file(results, out) -> int:
    """Write each result into the ``--out`` file ``out`` as it comes, closing it after; return how many inputs
    failed."""
    failed = 0
    with out:
        for result in results:
            failed += result.error is not None
            out.write(result)
    return failed


def suggest_multi(prediction):
    """``prediction`` with a refusal because several digits were found naming this command's way to read them,
    ``--multi``; the reason's kind (its words before ':') stays as the recogniser wrote it."""
    reason = prediction.reason
    if reason and "several digits" in reason and "--multi" not in reason:
        hint = "use multi-digit mode"
        prediction.reason = reason.replace(hint, "use --multi") if hint in reason else f"{reason} (try --multi)"
    return prediction


def not_read(unread: list[tuple[str, str]]):
    """The inputs found unreadable while collecting them, as results with their reason."""
    from digitlab.recognition.predict import Prediction

    return [Prediction(name, error=why) for name, why in unread]


def explain(prediction, out_path: str) -> None:
    from digitlab.recognition.explain import write_explanation
    from digitlab.recognition.decode import load_image

    original, _ = load_image(prediction.source, work_side=1024)
    write_explanation(prediction, original, out_path)
    print(f"wrote {out_path}", file=sys.stderr)

