"""The jobs on a trained checkpoint: eval, calibrate and export (all need PyTorch, but for the eval of an export).

    digitlab eval runs/cnn5x5_dense1000/model.safetensors
    digitlab eval model.onnx --tta                         # an export, run by onnxruntime: no PyTorch needed
    digitlab calibrate runs/bundle/model.safetensors --other-writers sklearn --refusal-bar
    digitlab export runs/cnn5x5_dense1000/model.safetensors --onnx model.onnx

`eval` and `export` read the bundled model when no checkpoint is named; `calibrate` rewrites a checkpoint's metadata,
so it needs one named. Nothing here imports PyTorch at import time: the options of `calibrate` and `export` are added
when that is the command, their defaults read from the training floor.
"""

from __future__ import annotations

import json
import sys

from digitlab.cli.help import DATA_DIR_HELP, DATA_HELP


def add_checkpoint_parsers(subparsers) -> None:
    p = subparsers.add_parser("eval", help="accuracy, per-class precision/recall and confusion on the 10,000 test "
                              "images")
    p.add_argument("checkpoint", nargs="?", help="a .safetensors checkpoint, or an ONNX export (`digitlab export`), "
                   "which onnxruntime runs without PyTorch (default: the bundled model)")
    p.add_argument("--backend", choices=("torch", "onnx"), help="what runs the model (default: as `predict` "
                   "chooses: onnx for a .onnx file and for a checkpoint with its own export beside it, as the bundled "
                   "model has; else torch; with --record always torch)")
    p.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    p.add_argument("--data", metavar="DIR", help=f"score your own labelled images instead: {DATA_HELP} (default: the "
                   "MNIST test set)")
    p.add_argument("--tta", action="store_true", help="average over 1-pixel shifts (test-time augmentation)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    p.add_argument("--record", action="store_true", help="write the test accuracy into the checkpoint's metadata "
                   "(key 'test', or 'test_tta' with --tta)")
    p.set_defaults(handler=cmd_eval)

    p = subparsers.add_parser("calibrate", help="fit a checkpoint's confidence temperature on the validation split "
                              "its training held out (and, if asked, on other writers' digits), and record it in the "
                              "checkpoint", fill=_calibrate_options)
    p.set_defaults(handler=cmd_calibrate)

    p = subparsers.add_parser("export", help="write a checkpoint as ONNX, checked against PyTorch in onnxruntime",
                              fill=_export_options)
    p.set_defaults(handler=cmd_export)


def _calibrate_options(p) -> None:
    from digitlab.cli.numbers import whole_number
    from digitlab.training import calibrate

    p.add_argument("checkpoint", help="a .safetensors checkpoint trained with --validation-split; its metadata is "
                   "rewritten (the weights are not), so re-export its ONNX afterwards")
    p.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    p.add_argument("--other-writers", metavar="SOURCE", help="also fit on real digits by writers MNIST never saw: "
                   "the choosing part of SOURCE (sklearn: scikit-learn's bundled digits, needs digitlab[dev]), drawn "
                   "the ways people hand digits in and read as their files are; the part the benchmarks report is "
                   "never used (default: the validation split alone)")
    p.add_argument("--other-count", type=whole_number(), metavar="N", help="digits of the other writers, each drawn "
                   f"in every case (default: {calibrate.OTHER_COUNT})")
    p.add_argument("--refusal-bar", action="store_true", help="also choose the 'not a digit' offset and the "
                   "threshold the model is read with: of those refusing at most "
                   f"{100 * calibrate.REFUSED_AT_MOST:g}%% of each source's real digits (their choose parts), the one "
                   "refusing the most real letters (needs an 11-output model and $DIGITLAB_REALDATA)")
    p.add_argument("--other-weight", type=float, metavar="SHARE", help="the other writers' share of the fit, the "
                   f"validation split having the rest whatever the sizes (default: {calibrate.OTHER_WEIGHT})")


def _export_options(p) -> None:
    from digitlab.cli.numbers import whole_number
    from digitlab.training import quantise
    from digitlab.training.export import CHECK_IMAGES, TOLERANCE

    p.add_argument("checkpoint", nargs="?", help="a .safetensors checkpoint (default: the bundled model)")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the file to write")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.onnx if it exists")
    p.add_argument("--tolerance", type=float, default=TOLERANCE,
                   help="largest |logit difference| from PyTorch accepted (default: %(default)g)")
    p.add_argument("--check-images", type=whole_number(), default=CHECK_IMAGES,
                   help="MNIST test images compared (default: %(default)s)")
    p.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    p.add_argument("--int8", action="store_true", help="quantise to int8 (onnxruntime static quantisation, "
                   "calibrated on MNIST training images): a smaller, faster file, written only if it reads the 10,000 "
                   "MNIST test images within --int8-tolerance of the fp32 export (default: fp32)")
    p.add_argument("--int8-tolerance", type=float, metavar="POINTS", help="with --int8: percentage points of test "
                   f"accuracy the int8 model may lose (default: {quantise.TOLERANCE_POINTS:g})")
    p.add_argument("--calibration-images", type=whole_number(), metavar="N", help="with --int8: MNIST training "
                   f"images its value ranges are calibrated on (default: {quantise.CALIBRATION_IMAGES})")


# --- handlers -----------------------------------------------------------------------------------------------------

def cmd_eval(args) -> int:
    from digitlab.errors import UsageError
    from digitlab.recognition.backends import backend_for, is_onnx
    from digitlab.scores import TTA_SHIFTS, format_report

    if args.record and args.checkpoint is None:
        raise ValueError("--record needs the checkpoint path it should write to")
    if args.record and args.data:
        raise UsageError("digitlab eval: error: --record writes the MNIST test accuracy; it cannot record --data")
    if args.record and is_onnx(args.checkpoint):
        raise ValueError(f"--record writes into a .safetensors checkpoint, and {args.checkpoint} is an ONNX export: "
                         "record the checkpoint it was exported from")
    if args.record and args.backend == "onnx":
        raise ValueError("--record writes what PyTorch reads in the checkpoint: leave out --backend onnx")
    if is_onnx(args.checkpoint) and args.backend == "torch":
        raise ValueError(f"{args.checkpoint} is an ONNX export, which onnxruntime runs: leave out --backend torch")
    shifts = TTA_SHIFTS if args.tta else ((0, 0),)
    backend = "torch" if args.record else backend_for(args.checkpoint, args.backend)
    score = _score_export if backend == "onnx" else _score_checkpoint
    result, meta, name, data = score(args, shifts)
    result["checkpoint"], result["arch"], result["backend"] = name, meta["arch"], backend
    if data is not None:  # the user's images: each mistake named by its file, skipped files on stderr
        from digitlab.datasets.folders import skipped_report

        report = skipped_report(data.skipped + result["dropped"], total=len(data) + len(data.skipped))
        result["skipped"] = [s.to_dict() for s in data.skipped + result.pop("dropped")]
        if report:
            print(report, file=sys.stderr)
    print(json.dumps(result) if args.json else format_report(result, what="test images" if data is None else "images"))
    return 0


def _user_images(args):
    """The labelled folder of ``--data``, read once the model is loaded (a bad model is told before a slow read), or
    None: MNIST's test set."""
    if not args.data:
        return None
    from digitlab.datasets.folders import load_folder

    return load_folder(args.data)


def _score_checkpoint(args, shifts) -> tuple[dict, dict, str, object]:
    """(report, metadata, name, the user's images or None) of a .safetensors checkpoint (the bundled one by default),
    run by PyTorch on MNIST's test set or on ``--data``; with --record, the test figures written into it."""
    from digitlab.labels import temperature_of
    from digitlab.scores import headline
    from digitlab.training import checkpoint
    from digitlab.training.data import load_mnist
    from digitlab.training.evaluate import evaluate, evaluate_folder

    model, meta = checkpoint.load(args.checkpoint)
    name, data = str(args.checkpoint or checkpoint.BUNDLED), _user_images(args)
    if data is not None:
        return evaluate_folder(model, data, shifts, temperature_of(meta)), meta, name, data
    images, labels = load_mnist("test", args.data_dir)
    result = evaluate(model, images, labels, shifts=shifts)
    if args.record:
        checkpoint.update_metadata(args.checkpoint, {"test_tta" if args.tta else "test": headline(result, shifts)})
    return result, meta, name, None


def _score_export(args, shifts) -> tuple[dict, dict, str, object]:
    """The same of an ONNX export, or of a checkpoint's own export beside it, run by onnxruntime as `predict` runs
    it: no PyTorch."""
    from digitlab.datasets.mnist import read_mnist
    from digitlab.recognition.backends import BUNDLED_CHECKPOINT
    from digitlab.recognition.engine import load_engine
    from digitlab.labels import temperature_of
    from digitlab.scores import engine_logits, report, score_folder

    engine = load_engine(args.checkpoint, "onnx")
    name = str(args.checkpoint or BUNDLED_CHECKPOINT)
    meta, data = engine.metadata, _user_images(args)
    if data is not None:
        result = score_folder(lambda images: engine_logits(engine, images, shifts), data, list(meta["classes"]),
                              temperature_of(meta))
        return result, meta, name, data
    images, labels = read_mnist("test", args.data_dir)
    return report(engine_logits(engine, images, shifts), labels), meta, name, None


def cmd_calibrate(args) -> int:
    from digitlab.training.calibrate import OTHER_COUNT, OTHER_WEIGHT, calibrate

    if args.other_writers is None and (args.other_count is not None or args.other_weight is not None):
        raise ValueError("--other-count and --other-weight are about the other writers: add --other-writers SOURCE")
    entry = calibrate(args.checkpoint, args.data_dir, args.other_writers,
                      OTHER_COUNT if args.other_count is None else args.other_count,
                      OTHER_WEIGHT if args.other_weight is None else args.other_weight, bar=args.refusal_bar)
    print(f"{args.checkpoint}: temperature {entry['temperature']:.4f} fitted on {entry['count']} held-out images; "
          f"expected calibration error {entry['ece_before']:.2%} -> {entry['ece_after']:.2%}, "
          f"log loss {entry['nll_before']:.4f} -> {entry['nll_after']:.4f}")
    for part in entry.get("parts", []):
        print(f"  {part['name']}: {part['count']} images weighing {part['weight']:.0%}, expected calibration error "
              f"{part['ece_before']:.2%} -> {part['ece_after']:.2%}")
    if "refusal_bar" in entry:
        bar = entry["refusal_bar"]
        print(f"  read with 'not a digit' lowered by {entry['not_a_digit_offset']:g} log-odds and threshold "
              f"{entry['threshold']:g}: digits refused " + ", ".join(f"{s} {v:.1%}" for s, v in
                                                                    bar["digits_refused"].items())
              + "; letters refused " + ", ".join(f"{s} {v:.1%}" for s, v in bar["letters_refused"].items()))
    return 0


def cmd_export(args) -> int:
    from digitlab.training.export import ExportError, export_onnx
    from digitlab.training.quantise import AccuracyLossError

    if not args.onnx.endswith(".onnx"):
        raise ValueError(f"--onnx {args.onnx}: the output file should end in .onnx")
    if args.check_images < 1:
        raise ValueError("--check-images must be at least 1")
    if not args.int8 and (args.int8_tolerance is not None or args.calibration_images is not None):
        raise ValueError("--int8-tolerance and --calibration-images are about the int8 export: add --int8")
    try:
        report = export_onnx(args.checkpoint, args.onnx, data_dir=args.data_dir, tolerance=args.tolerance,
                             check_images=args.check_images, overwrite=args.overwrite, int8=args.int8,
                             int8_tolerance=args.int8_tolerance, calibration_images=args.calibration_images)
    except AccuracyLossError as exc:  # the user's tolerance refused it: as bad input, exit 2
        print(f"digitlab export: error: {exc}", file=sys.stderr)
        return 2
    except ExportError as exc:
        print(f"digitlab export: error: {exc}", file=sys.stderr)
        return 1
    if report.int8:
        q = report.int8
        change = -q["accuracy_loss_points"] or 0.0  # never "-0.00"
        print(f"wrote {report.path} ({report.size_bytes / 1e6:.2f} MB, int8, dynamic batch axis): MNIST test accuracy "
              f"{q['fp32_accuracy']:.2%} fp32 -> {q['int8_accuracy']:.2%} int8 ({change:+.2f} "
              f"points on {q['test_images']:,} images; calibrated on {q['calibration_images']:,} training images)")
        return 0
    print(f"wrote {report.path} ({report.size_bytes / 1e6:.2f} MB, dynamic batch axis): onnxruntime matches PyTorch "
          f"on {report.images_checked} MNIST test images, max |logit difference| {report.max_abs_diff:.2g}, "
          f"same class for {report.agreement:.2%}")
    return 0
