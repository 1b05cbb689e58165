"""The training jobs of ``digitlab``: train, eval, export, models, summary and recipes (all need PyTorch).

    digitlab recipes
    digitlab train --recipe cnn5x5_dense1000 --epochs 3
    digitlab eval runs/cnn5x5_dense1000/model.safetensors
    digitlab export runs/cnn5x5_dense1000/model.safetensors --onnx model.onnx
    digitlab models
    digitlab summary digitnet
    digitlab summary runs/default/model.safetensors

The options of `train` are the fields of ``TrainConfig``, read from the dataclass when `train` is the command (the
training floor imports PyTorch; nothing here does at import time). Each overrides one setting of the recipe.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path


# Help for each TrainConfig field, unless the field carries its own (``field(metadata={"help": ...})``). A field with
# neither fails tests/cli/test_options.py; so does a field that is neither an option nor listed in RECIPE_ONLY.
FIELD_HELP = {
    "model": "network name, one of: {models}",
    "epochs": "passes over the training set",
    "batch_size": "images per optimiser step",
    "optimizer": "the optimiser",
    "learning_rate": "peak learning rate",
    "adam_beta2": "adam/adamw: how slowly the average of squared gradients forgets (beta2); 0.9 suits runs of a few "
                  "hundred steps",
    "weight_decay": "decoupled weight decay (adamw) or L2 penalty",
    "momentum": "SGD momentum (Nesterov); sgd only",
    "schedule": "how the learning rate changes over the run",
    "step_epochs": "'step' schedule: multiply the rate by --step-gamma every this many epochs",
    "step_gamma": "'step' schedule: the factor",
    "plateau_patience": "'plateau' schedule: epochs without a better validation loss before the rate drops",
    "plateau_factor": "'plateau' schedule: the factor the rate is multiplied by when it drops",
    "onecycle_warmup": "'onecycle' schedule: the fraction of the run spent raising the rate (PyTorch's pct_start)",
    "label_smoothing": "label smoothing of the cross-entropy, in [0, 1)",
    "augment": "random rotation/shift/scale/shear of each batch, on tensors",
    "ema_decay": "keep an exponential moving average of the weights (e.g. 0.999) and save it; 0: off",
    "not_a_digit": "letters added to each batch, as this fraction of it, taught as an 11th class 'not a digit' "
                   "(needs a recipe whose network has 11 outputs)",
    "real_letters": "the 'not a digit' letters include real handwritten letters by other writers (their training "
                    "part; needs --realdata-dir or $DIGITLAB_REALDATA)",
    "other_writers": "real digits by writers outside MNIST added to each batch, as this fraction of it (their "
                     "training part, drawn as people hand digits in; needs --realdata-dir or $DIGITLAB_REALDATA)",
    "realdata_dir": "folder of real handwriting by other writers (default: $DIGITLAB_REALDATA)",
    "validation_split": "fraction of the training set held out for validation, e.g. 0.1",
    "early_stopping": "stop after this many epochs without a better validation accuracy and keep the best; 0: off",
    "seed": "random seed",
    "limit": "train on the first N images only; 0: all",
    "device": "auto, cpu, cuda, cuda:N (GPU N) or mps",
    "threads": "CPU threads; 0: PyTorch's choice",
    "channels_last": "run convolutions channels-last (faster on CPU)",
    "sync_batchnorm": "under torchrun on GPUs: batch-norm statistics over every process's batches (SyncBatchNorm); "
                      "on the CPU it is refused",
    "bf16": "forward and backward passes in bfloat16 autocast (faster on CPUs with AVX-512 BF16 or AMX, and on "
            "GPUs); weights and optimiser stay float32",
    "data_dir": "folder with the four MNIST files ($DIGITLAB_DATA, then ~/.cache/digitlab/mnist, when unset)",
    "data": "what to train on, repeatable: 'mnist' and/or folders of your own labelled images ({data_help}); "
            "--data DIR alone trains on DIR only",
}
DATA_HELP = ("a folder of class folders 0-9 (and not_a_digit), of files whose names carry the label (3_x.png), or "
             "a path,label CSV; read as `predict` reads images")
DATA_DIR_HELP = "folder with the four MNIST files (default: $DIGITLAB_DATA, then ~/.cache/digitlab/mnist)"
METAVARS = {"early_stopping": "PATIENCE", "limit": "N", "threads": "N", "data_dir": "DIR", "realdata_dir": "DIR"}
# Settings that are not one number or word: set by a recipe (training/config.py RECIPES), not on the command line.
RECIPE_ONLY = ("model_kwargs", "augment_config")

# Where `digitlab recipes` sends a reader for what each recipe was measured to reach, and how long it took: the
# figures change as recipes are retuned and machines differ, so they live in the docs beside their commands.
RESULTS = ("What each recipe reaches and how long it trains, with the command and the machine: docs/results.md\n"
           "('Accuracy', 'Training time', 'Time to accuracy'); each recipe described: docs/networks.md ('The recipes')")


def add_train_parsers(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a network on MNIST", fill=_train_options,
                              epilog=f"Set only by a recipe: {', '.join(RECIPE_ONLY)}. Under torchrun "
                                     "(`torchrun --nproc_per_node N -m digitlab.cli train ...`) it trains with "
                                     "DistributedDataParallel.")
    p.set_defaults(handler=cmd_train)

    p = subparsers.add_parser("eval", help="accuracy, per-class precision/recall and confusion on the 10,000 test "
                              "images")
    p.add_argument("checkpoint", nargs="?", help="a .safetensors checkpoint (default: the bundled model)")
    p.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    p.add_argument("--data", metavar="DIR", help=f"score your own labelled images instead: {DATA_HELP} (default: the "
                   "MNIST test set)")
    p.add_argument("--tta", action="store_true", help="average over 1-pixel shifts (test-time augmentation)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    p.add_argument("--record", action="store_true", help="write the test accuracy into the checkpoint's metadata "
                   "(key 'test', or 'test_tta' with --tta)")
    p.set_defaults(handler=cmd_eval)

    p = subparsers.add_parser("finetune", help="fine-tune a model on your own labelled images mixed with MNIST; "
                              "writes a new checkpoint and its ONNX export", fill=_finetune_options)
    p.set_defaults(handler=cmd_finetune)

    p = subparsers.add_parser("calibrate", help="fit a checkpoint's confidence temperature on the validation split "
                              "its training held out (and, if asked, on other writers' digits), and record it in the "
                              "checkpoint", fill=_calibrate_options)
    p.set_defaults(handler=cmd_calibrate)

    p = subparsers.add_parser("export", help="write a checkpoint as ONNX, checked against PyTorch in onnxruntime",
                              fill=_export_options)
    p.set_defaults(handler=cmd_export)

    p = subparsers.add_parser("models", help="list the registered networks with their parameter counts")
    p.set_defaults(handler=cmd_models)

    p = subparsers.add_parser("summary", help="print a Keras-style layer table of a network or a checkpoint")
    p.add_argument("name", metavar="NAME|CKPT", help="a network name from `digitlab models`, or a .safetensors "
                   "checkpoint (its network as built, e.g. with the 11th output)")
    p.set_defaults(handler=cmd_summary)

    p = subparsers.add_parser("recipes", help="list the named recipes and their main settings (what each reaches: "
                              "docs/results.md)")
    p.set_defaults(handler=cmd_recipes)


def _train_options(p) -> None:
    """One option per TrainConfig field, its type, choices and help taken from where they are defined."""
    import types
    from dataclasses import fields
    from typing import get_type_hints

    from digitlab.training.config import DEFAULT_RECIPE, OPTIMIZERS, SCHEDULES, TrainConfig, list_recipes
    from digitlab.training.models import list_models

    p.add_argument("--recipe", help=f"a named recipe, one of: {', '.join(list_recipes())} (`digitlab recipes`); the "
                   f"options below override it (default: {DEFAULT_RECIPE}, or the tutorial recipe named by --model)")
    choices = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES}
    hints = get_type_hints(TrainConfig)
    for field in fields(TrainConfig):
        if field.name in RECIPE_ONLY:
            continue
        kind = hints[field.name]
        if isinstance(kind, types.UnionType):  # `str | None`: the option takes a str
            kind = next(arg for arg in kind.__args__ if arg is not type(None))
        if kind not in (bool, int, float, str):  # not one number or word: RECIPE_ONLY (a test checks it is there)
            continue
        help_text = (field_help(field) or "").format(models=", ".join(list_models())) + " (default: the recipe's)"
        option = "--" + field.name.replace("_", "-")
        if kind is bool:
            p.add_argument(option, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            p.add_argument(option, type=_option_type(field.name, kind), choices=choices.get(field.name),
                           metavar=METAVARS.get(field.name), help=help_text)
    p.add_argument("--data", action="append", metavar="DIR|mnist",
                   help=FIELD_HELP["data"].format(data_help=DATA_HELP) + " (default: the recipe's: mnist)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/RECIPE, or runs/MODEL with --model)")
    p.add_argument("--resume", action="store_true", help="continue from the last finished epoch in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the model already in --out with a new run")
    p.add_argument("--dry-run", action="store_true", help="run a few batches end to end and stop; without --out it "
                   "writes into a temporary folder that it removes, so no run is touched")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--tensorboard", action="store_true", help="also write each epoch's loss, accuracy and learning "
                   "rate as TensorBoard event files in OUT/tensorboard (needs: pip install 'digitlab[tensorboard]')")


def _option_type(name: str, kind: type):
    """What argparse reads a settings field's option with: ints within what PyTorch takes (``cli.whole_number``),
    the seed within what its generators take; other kinds as they are."""
    from digitlab.cli.numbers import MAX_SEED, whole_number

    if kind is not int:
        return kind
    return whole_number(0, MAX_SEED) if name == "seed" else whole_number()


def field_help(field) -> str | None:
    """The help text of a TrainConfig field: its own metadata, else FIELD_HELP."""
    return field.metadata.get("help") or FIELD_HELP.get(field.name)


def _finetune_options(p) -> None:
    """The base model, the data, where to write, and one option per FinetuneConfig field."""
    from dataclasses import fields
    from typing import get_type_hints

    from digitlab.training.finetune import FinetuneConfig

    p.add_argument("checkpoint", nargs="?", help="the model to start from (default: the bundled model)")
    p.add_argument("--data", metavar="DIR", required=True, help=DATA_HELP)
    p.add_argument("--out", metavar="DIR", default="runs/finetune", help="where model.safetensors and model.onnx "
                   "are written (default: %(default)s)")
    hints = get_type_hints(FinetuneConfig)
    for field in fields(FinetuneConfig):
        option, help_text = "--" + field.name.replace("_", "-"), field.metadata["help"] + " (default: %(default)s)"
        if hints[field.name] is bool:
            p.add_argument(option, action=argparse.BooleanOptionalAction, default=field.default, help=help_text)
        else:
            p.add_argument(option, type=_option_type(field.name, hints[field.name]), default=field.default,
                           metavar=METAVARS.get(field.name), help=help_text)
    p.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace the model already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def cmd_finetune(args) -> int:
    from dataclasses import fields

    from digitlab.training.finetune import FinetuneConfig, finetune
    from digitlab.datasets.folders import skipped_report

    config = FinetuneConfig(**{f.name: getattr(args, f.name) for f in fields(FinetuneConfig)})
    check_folder_option("--out", args.out)
    result = finetune(args.data, args.out, args.checkpoint, config, data_dir=args.data_dir,
                      overwrite=args.overwrite, quiet=args.quiet, command=_command_line())
    report = skipped_report(result.skipped, total=len(result.data) + len(result.data.skipped))
    if report:
        print(report, file=sys.stderr)
    scores = result.metrics
    print(f"wrote {result.out_dir / 'model.safetensors'} and {result.out_dir / 'model.onnx'} "
          f"({result.seconds:.0f} s)")
    for name, what in (("val", "your held-out images"), ("mnist_val", "MNIST digits neither model trained on")):
        if f"before_{name}_accuracy" in scores:
            print(f"{what}: {scores[f'before_{name}_accuracy']:.2%} -> {scores[f'after_{name}_accuracy']:.2%}")
    if result.calibration:
        print(f"confidence temperature refitted: {result.calibration['temperature']:.4f} "
              f"({result.calibration['fitted_on']})")
    else:
        print("confidence: not calibrated (nothing held out, or no mistake to fit a temperature on): the model is "
              "read at the uncalibrated threshold")
    return 0


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
    p.add_argument("--other-count", type=whole_number(), metavar="N", help="digits of the other writers, each drawn in every "
                   f"case (default: {calibrate.OTHER_COUNT})")
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
    p.add_argument("--calibration-images", type=whole_number(), metavar="N", help="with --int8: MNIST training images its "
                   f"value ranges are calibrated on (default: {quantise.CALIBRATION_IMAGES})")


def check_folder_option(option: str, name: str) -> None:
    """ValueError unless ``name`` is a folder or can become one: a file (``/dev/null``) or a path through a file
    would otherwise fail later as "[Errno 17] File exists", which names neither the option nor the cause."""
    path = Path(name)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} must be a folder, and {name} is not one (it is a file or a device)")
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise ValueError(f"{option} must be a folder, and {name} cannot be one: {blocking} is a file, not a folder")


# --- handlers -----------------------------------------------------------------------------------------------------

def cmd_train(args) -> int:
    from dataclasses import fields

    from digitlab.training.config import DEFAULT_RECIPE, MNIST, RECIPES, TrainConfig, recipe_config
    from digitlab.errors import UsageError
    from digitlab.training.distributed import is_main_process
    from digitlab.training.loop import train
    from digitlab.training.run_folder import check_out_dir, check_tensorboard

    # `--model cnn5x5_dense1000` alone means that tutorial's settings, not our network's
    recipe = args.recipe or (args.model if args.model in RECIPES else DEFAULT_RECIPE)
    if args.data:  # folders are recorded whole, so calibrating or resuming from elsewhere finds them
        args.data = [d if d == MNIST else str(Path(d).expanduser().resolve()) for d in args.data]
    cfg = recipe_config(recipe, **{f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)})
    if args.resume and args.overwrite:
        raise UsageError("digitlab train: error: --resume continues the run in --out, --overwrite replaces it: "
                         "choose one")
    # A dry run is a check, not a run: unless told where, it writes where no run lives and keeps nothing.
    scratch = args.dry_run and args.out is None
    if scratch and args.resume:
        raise UsageError("digitlab train: error: --dry-run --resume needs --out, the run to continue")
    with (tempfile.TemporaryDirectory(prefix="digitlab-dry-run-") if scratch else nullcontext()) as temporary:
        out_dir = temporary or args.out or f"runs/{recipe if args.model is None else cfg.model}"
        check_folder_option("--out", out_dir)
        check_out_dir(Path(out_dir), args.resume, args.overwrite)  # before anything is printed: one line
        if args.tensorboard:
            check_tensorboard()
        cfg = without_missing_writers(cfg, asked=any(getattr(args, name, None) is not None for name in
                                                     ("other_writers", "real_letters", "realdata_dir")))
        speak = is_main_process()  # under torchrun only rank 0 talks
        if speak:
            report_folders(cfg)
        if speak:
            print(f"training {cfg.model} (recipe {recipe}) -> {'a temporary folder' if scratch else out_dir}",
                  file=sys.stderr)
        try:
            result = train(cfg, out_dir, resume=args.resume, dry_run=args.dry_run, command=_command_line(),
                           quiet=args.quiet, overwrite=args.overwrite, tensorboard=args.tensorboard)
        except KeyboardInterrupt:
            print("\ninterrupted" + ("" if scratch else f": finished epochs are saved in {out_dir}; continue with "
                                     "--resume"), file=sys.stderr)
            return 130
    if speak:
        written = [str(result.out_dir / name) for name in ("model.safetensors", "history.json", "curves.png")
                   if (result.out_dir / name).is_file()]  # a one-epoch run draws no curves
        print("dry run: nothing kept (--out DIR keeps its files)" if scratch
              else f"wrote {', '.join(written[:-1])} and {written[-1]}")
        print(accuracy_line(result.metrics))
    return 0


def without_missing_writers(cfg, asked: bool):
    """``cfg``, or without the real handwriting by other writers when the recipe asks for it and no folder of it is
    configured: a recipe trains on MNIST alone then, says so in one line, and its checkpoint records what it really
    learned from. Asked for on the command line, the handwriting must be there (DataError, one line)."""
    from dataclasses import replace

    from digitlab.errors import DataError
    from digitlab.datasets.writers import locate

    if not (cfg.other_writers or cfg.real_letters):
        return cfg
    try:
        locate(cfg.realdata_dir)
    except DataError as exc:
        if asked:
            raise
        print(f"note: {exc}; training on MNIST's writers alone (the recipe's other_writers and real_letters off)",
              file=sys.stderr)
        return replace(cfg, other_writers=0.0, real_letters=False)
    return cfg


def report_folders(cfg) -> None:
    """Read the run's labelled folders once before training (filling their cache) and say, on stderr, what each
    holds and which files are left out; a folder with nothing usable is an error before the run starts."""
    if not cfg.folders():
        return  # reading images is not imported for MNIST alone
    from digitlab.datasets.folders import for_model, load_folder, skipped_report

    for source in cfg.folders():
        data = load_folder(source)
        images, _, _, dropped = for_model(data, cfg.data_config().classes)
        print(f"{source}: {len(images)} labelled images ({data.layout})", file=sys.stderr)
        report = skipped_report(data.skipped + dropped, total=len(data) + len(data.skipped))
        if report:
            print(report, file=sys.stderr)
        if not len(images):
            raise ValueError(f"{source}: no usable labelled images to train on")


def accuracy_line(metrics: dict) -> str:
    """How good the saved model is, saying on what it was measured."""
    if "val_accuracy" in metrics:
        return f"validation accuracy {metrics['val_accuracy']:.2%} (the held-out part of the training set)"
    if "test_accuracy" in metrics:
        return (f"test accuracy {metrics['test_accuracy']:.2%} (on {metrics['test_images']:,} MNIST test images; "
                f"no validation split was held out)")
    return "accuracy: not measured (nothing was held out: --validation-split 0.2 holds out a fifth to measure on)"


def cmd_eval(args) -> int:
    from digitlab.training import checkpoint
    from digitlab.training.data import load_mnist
    from digitlab.errors import UsageError
    from digitlab.training.evaluate import TTA_SHIFTS, evaluate, format_report, headline

    if args.record and args.checkpoint is None:
        raise ValueError("--record needs the checkpoint path it should write to")
    if args.record and args.data:
        raise UsageError("digitlab eval: error: --record writes the MNIST test accuracy; it cannot record --data")
    model, meta = checkpoint.load(args.checkpoint)
    shifts = TTA_SHIFTS if args.tta else ((0, 0),)
    if args.data:
        return _eval_folder(args, model, meta, shifts)
    images, labels = load_mnist("test", args.data_dir)
    result = evaluate(model, images, labels, shifts=shifts)
    if args.record:
        checkpoint.update_metadata(args.checkpoint, {"test_tta" if args.tta else "test": headline(result, shifts)})
    result["checkpoint"] = str(args.checkpoint or checkpoint.BUNDLED)
    result["arch"] = meta["arch"]
    print(json.dumps(result) if args.json else format_report(result))
    return 0


def _eval_folder(args, model, meta, shifts) -> int:
    """`eval --data`: the report on the user's images, each mistake named by its file; skipped files on stderr."""
    from digitlab.training import checkpoint
    from digitlab.training.calibrate import temperature_of
    from digitlab.training.evaluate import evaluate_folder, format_report
    from digitlab.datasets.folders import load_folder, skipped_report

    data = load_folder(args.data)
    result = evaluate_folder(model, data, shifts, temperature_of(meta))
    result["checkpoint"] = str(args.checkpoint or checkpoint.BUNDLED)
    result["arch"] = meta["arch"]
    report = skipped_report(data.skipped + result["dropped"], total=len(data) + len(data.skipped))
    result["skipped"] = [s.to_dict() for s in data.skipped + result.pop("dropped")]
    if report:
        print(report, file=sys.stderr)
    print(json.dumps(result) if args.json else format_report(result, what="images"))
    return 0


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


def cmd_models(args) -> int:
    from digitlab.training.models import count_parameters, create_model, get_entry, list_models

    print(f"{'network':<20}{'parameters':>12}  description")
    for name in list_models():
        print(f"{name:<20}{count_parameters(create_model(name)):>12,}  {get_entry(name).summary}")
    return 0


def cmd_summary(args) -> int:
    from digitlab.training import checkpoint
    from digitlab.training.models import create_model, list_models
    from digitlab.training.summary import summary_table

    if args.name in list_models() or not looks_like_a_file(args.name):
        print(summary_table(create_model(args.name), title=args.name))
    else:
        model, meta = checkpoint.load(args.name)
        kwargs = ", ".join(f"{k}={v}" for k, v in (meta.get("arch_kwargs") or {}).items())
        print(summary_table(model, title=f"{meta['arch']}({kwargs}) from {args.name}"))
    return 0


def looks_like_a_file(name: str) -> bool:
    """A command-line word that names a file rather than a network: it exists, has a suffix, or has a folder."""
    return Path(name).exists() or Path(name).suffix != "" or "/" in name or os.sep in name


def cmd_recipes(args) -> int:
    from digitlab.training.config import RECIPES, recipe_config

    print(f"{'recipe':<18}{'network':<18}{'epochs':>6}{'batch':>7}  {'optimizer':<11}{'learning rate':<15}"
          f"{'schedule':<10}held out")
    for name in RECIPES:
        cfg = recipe_config(name)
        print(f"{name:<18}{cfg.model:<18}{cfg.epochs:>6}{cfg.batch_size:>7}  {cfg.optimizer:<11}"
              f"{cfg.learning_rate:<15g}{cfg.schedule:<10}{cfg.validation_split:g}")
    print(f"\n{RESULTS}")
    return 0


def _command_line() -> str:
    """How this run was started, as a user would type it (recorded in checkpoints), whatever the entry point."""
    return shlex.join(["digitlab", *sys.argv[1:]])
