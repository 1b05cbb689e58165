"""The training jobs of ``digitlab``: train and finetune (both need PyTorch).

    digitlab train --recipe cnn5x5_dense1000 --epochs 3
    digitlab finetune --data my_digits/ --out runs/mine

The options of `train` are the fields of ``TrainConfig``, read from the dataclass when `train` is the command (the
training floor imports PyTorch; nothing here does at import time). Each overrides one setting of the recipe. Those of
`finetune` are the fields of ``FinetuneConfig``, read the same way.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

from digitlab.cli.help import DATA_DIR_HELP, DATA_HELP

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
METAVARS = {"early_stopping": "PATIENCE", "limit": "N", "threads": "N", "data_dir": "DIR", "realdata_dir": "DIR"}
# Settings that are not one number or word: set by a recipe (training/config.py RECIPES), not on the command line.
RECIPE_ONLY = ("model_kwargs", "augment_config")


def add_train_parsers(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a network on MNIST", fill=_train_options,
                              epilog=f"Set only by a recipe: {', '.join(RECIPE_ONLY)}. Under torchrun "
                                     "(`torchrun --nproc_per_node N -m digitlab.cli train ...`) it trains with "
                                     "DistributedDataParallel.")
    p.set_defaults(handler=cmd_train)

    p = subparsers.add_parser("finetune", help="fine-tune a model on your own labelled images mixed with MNIST; "
                              "writes a new checkpoint and its ONNX export", fill=_finetune_options)
    p.set_defaults(handler=cmd_finetune)


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


def check_folder_option(option: str, name: str) -> None:
    """ValueError unless ``name`` is a folder or can become one: a file (``/dev/null``) or a path through a file
    would otherwise fail later as "[Errno 17] File exists", which names neither the option nor the cause."""
    path = Path(name)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} must be a folder, and {name} is not one (it is a file or a device)")
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise ValueError(f"{option} must be a folder, and {name} cannot be one: {blocking} is a file, not a folder")


def _command_line() -> str:
    """How this run was started, as a user would type it (recorded in checkpoints), whatever the entry point."""
    return shlex.join(["digitlab", *sys.argv[1:]])
