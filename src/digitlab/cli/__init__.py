"""The ``digitlab`` command: one subcommand per job, each handler a few lines that call the library.

    digitlab train --recipe cnn5x5_dense1000
    digitlab eval runs/cnn5x5_dense1000/model.safetensors
    digitlab models
    digitlab summary cnn5x5_dense1000
    digitlab serve --model model.onnx          (cli_serve.py: serve, export)

Bad arguments or input end in a one-line message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of argparse's usage block
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


# --- handlers -----------------------------------------------------------------------------------------------

def cmd_models(args) -> int:
    from digitlab.training.models import count_parameters, create_model, get_entry, list_models

    print(f"{'network':<20}{'parameters':>12}  description")
    for name in list_models():
        print(f"{name:<20}{count_parameters(create_model(name)):>12,}  {get_entry(name).summary}")
    return 0


def cmd_summary(args) -> int:
    from digitlab.training.models import create_model
    from digitlab.training.summary import summary_table

    print(summary_table(create_model(args.name), title=args.name))
    return 0


TRAIN_OVERRIDES = ("model", "epochs", "batch_size", "optimizer", "learning_rate", "weight_decay", "schedule",
                   "label_smoothing", "augment", "ema_decay", "validation_split", "early_stopping", "seed", "limit",
                   "device", "threads", "data_dir")


def cmd_train(args) -> int:
    from digitlab.training.config import DEFAULT_RECIPE, RECIPES, recipe_config
    from digitlab.training.loop import is_main_process, train

    # `--model cnn5x5_dense1000` alone means that tutorial's settings, not our network's
    recipe = args.recipe or (args.model if args.model in RECIPES else DEFAULT_RECIPE)
    cfg = recipe_config(recipe, **{k: getattr(args, k) for k in TRAIN_OVERRIDES})
    out_dir = args.out or f"runs/{recipe if args.model is None else cfg.model}"
    speak = is_main_process()  # under torchrun only rank 0 talks
    if speak:
        print(f"training {cfg.model} (recipe {recipe}) -> {out_dir}", file=sys.stderr)
    try:
        result = train(cfg, out_dir, resume=args.resume, dry_run=args.dry_run, command=_command_line(),
                       quiet=args.quiet)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished epochs are saved in {out_dir}; continue with --resume", file=sys.stderr)
        return 130
    if speak:
        print(f"wrote {result.out_dir / 'model.safetensors'} and {result.out_dir / 'history.json'}")
    return 0


def cmd_eval(args) -> int:
    from digitlab.training import checkpoint
    from digitlab.training.data import load_mnist
    from digitlab.training.evaluate import TTA_SHIFTS, evaluate, format_report, headline

    if args.record and args.checkpoint is None:
        raise UsageError("digitlab eval: error: --record needs the checkpoint path it should write to")
    model, meta = checkpoint.load(args.checkpoint)
    images, labels = load_mnist("test", args.data_dir)
    shifts = TTA_SHIFTS if args.tta else ((0, 0),)
    result = evaluate(model, images, labels, shifts=shifts)
    if args.record:
        checkpoint.update_metadata(args.checkpoint, {"test_tta" if args.tta else "test": headline(result, shifts)})
    result["checkpoint"] = str(args.checkpoint or checkpoint.BUNDLED)
    result["arch"] = meta["arch"]
    print(json.dumps(result) if args.json else format_report(result))
    return 0


# --- the parser -----------------------------------------------------------------------------------------------

def build_parser() -> Parser:
    parser = Parser(prog="digitlab", description="Train CNNs on MNIST and recognise handwritten digits.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("models", help="list the registered networks with their parameter counts")
    p.set_defaults(handler=cmd_models)

    p = sub.add_parser("summary", help="print a Keras-style layer table of a network")
    p.add_argument("name", help="a network name from `digitlab models`")
    p.set_defaults(handler=cmd_summary)

    p = sub.add_parser("train", help="train a network on MNIST")
    p.add_argument("--recipe", help="a named recipe (the tutorials' settings); options below override it")
    p.add_argument("--model", help="network name (default: the recipe's)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=("adam", "adamw", "sgd"))
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", choices=("constant", "step", "onecycle", "plateau"))
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random rotation/shift/scale of each batch")
    p.add_argument("--ema-decay", type=float, help="keep an exponential moving average of the weights (e.g. 0.999)")
    p.add_argument("--validation-split", type=float, help="fraction of the training set held out, e.g. 0.1")
    p.add_argument("--early-stopping", type=int, metavar="PATIENCE", help="stop after this many epochs without a "
                   "better validation accuracy and keep the best")
    p.add_argument("--seed", type=int)
    p.add_argument("--limit", type=int, help="train on the first N images only")
    p.add_argument("--device", help="cpu, cuda, cuda:1 or auto (default)")
    p.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's choice)")
    p.add_argument("--data-dir", help="folder with the four MNIST files (default: $DIGITLAB_DATA, then the cache)")
    p.add_argument("--out", help="output folder (default: runs/RECIPE)")
    p.add_argument("--resume", action="store_true", help="continue from the last finished epoch in --out")
    p.add_argument("--dry-run", action="store_true", help="run a few batches end to end and stop")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("eval", help="accuracy, per-class precision/recall and confusion on the 10,000 test images")
    p.add_argument("checkpoint", nargs="?", help="a .safetensors checkpoint (default: the bundled model)")
    p.add_argument("--data-dir", help="folder with the four MNIST files")
    p.add_argument("--tta", action="store_true", help="average over 1-pixel shifts (test-time augmentation)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    p.add_argument("--record", action="store_true", help="write the test accuracy into the checkpoint's metadata "
                   "(key 'test', or 'test_tta' with --tta)")
    p.set_defaults(handler=cmd_eval)

    from digitlab.cli.predict import add_predict_parsers  # predict, export-samples (issue 4)
    add_predict_parsers(sub)
    from digitlab.cli.serve import add_serve_parsers  # serve, export (issue 5)
    add_serve_parsers(sub)
    return parser


def _command_line() -> str:
    """How this run was started, as a user would type it (recorded in checkpoints), whatever the entry point."""
    return shlex.join(["digitlab", *sys.argv[1:]])


def _version() -> str:
    from digitlab import __version__

    return f"digitlab {__version__}"


def main(argv: list[str] | None = None) -> int:
    from digitlab.errors import CheckpointError, DataError  # torch-free: `--backend onnx` never loads PyTorch

    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (ValueError, OSError, DataError, CheckpointError) as exc:
        print(f"digitlab: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
