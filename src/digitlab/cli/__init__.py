"""The ``digitlab`` command: one module per job, each adding its subcommands to the one parser built here.

    cli/train.py       train, finetune                 (need PyTorch: ``digitlab[train]``)
    cli/checkpoint.py  eval, calibrate, export         (need PyTorch: ``digitlab[train]``; not eval of an export)
    cli/catalogue.py   models, summary, recipes        (need PyTorch: ``digitlab[train]``)
    cli/predict.py     predict                         (torch-free: ONNX, or PyTorch when installed)
    cli/serve.py       serve                           (``digitlab[serve]``)
    cli/data.py        export-samples                  (torch-free)
    cli/report.py      report                          (needs PyTorch: ``digitlab[train]``)
    cli/numbers.py     the type of every whole-number option, bounded to what PyTorch takes
    cli/help.py        the help of the options several jobs share (--data, --data-dir)

Bad arguments or input end in a one-line message and exit code 2, never a traceback; so does a job whose optional
dependencies are not installed, naming the extra that brings them.
"""

from __future__ import annotations

import argparse
import sys

from digitlab.errors import TrainingError, UsageError

# What each missing import means to a user: the package to name and the extra (pyproject) that installs it.
EXTRAS = {
    "torch": ("PyTorch", "train"),
    "safetensors": ("safetensors", "train"),
    "onnx": ("onnx", "export"),
    "onnxscript": ("onnxscript", "export"),
    "fastapi": ("FastAPI and uvicorn", "serve"),
    "starlette": ("FastAPI and uvicorn", "serve"),
    "uvicorn": ("FastAPI and uvicorn", "serve"),
    "multipart": ("python-multipart", "serve"),
    "python_multipart": ("python-multipart", "serve"),
    "swagger_ui_bundle": ("swagger-ui-bundle", "serve"),
    "prometheus_client": ("prometheus-client", "serve"),
}
# How the message names the job that needed it.
JOBS = {"train": "training", "eval": "evaluating a checkpoint", "finetune": "fine-tuning",
        "calibrate": "calibrating a checkpoint", "export": "exporting to ONNX", "models": "listing the networks",
        "summary": "building a network", "recipes": "listing the recipes",
        "predict": "running a .safetensors checkpoint", "serve": "serving", "report": "drawing the report"}


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors, and options that can be added only when their subcommand is chosen.

    ``fill(parser)`` runs before the parser parses or prints its help: the training options come from
    ``TrainConfig``, which lives on the floor that imports PyTorch, so `digitlab predict` never waits for it.
    """

    def __init__(self, *args, fill=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._fill = fill

    def fill(self) -> Parser:
        from digitlab.collector import imports_at_once

        if self._fill is not None:
            fill, self._fill = self._fill, None
            try:
                with imports_at_once():  # where a job's options bring in its framework (PyTorch for training)
                    fill(self)
            except ModuleNotFoundError as exc:
                raise UsageError(missing_extra(self.prog.split()[-1], exc) or str(exc)) from None
        return self

    def parse_known_args(self, args=None, namespace=None):
        self.fill()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self.fill()
        return super().format_help()

    def error(self, message: str):  # one line instead of argparse's usage block
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


def missing_extra(command: str, exc: ModuleNotFoundError) -> str | None:
    """The one line that says which extra to install, when ``exc`` is an optional dependency gone missing."""
    package, extra = EXTRAS.get((exc.name or "").split(".")[0], (None, None))
    if package is None:
        return None
    return f"digitlab: error: {JOBS.get(command, command)} needs {package}: pip install 'digitlab[{extra}]'"


def build_parser() -> Parser:
    from digitlab.cli.catalogue import add_catalogue_parsers
    from digitlab.cli.checkpoint import add_checkpoint_parsers
    from digitlab.cli.data import add_data_parsers
    from digitlab.cli.predict import add_predict_parsers
    from digitlab.cli.report import add_report_parsers
    from digitlab.cli.serve import add_serve_parsers
    from digitlab.cli.train import add_train_parsers

    parser = Parser(prog="digitlab", description="Train CNNs on MNIST and recognise handwritten digits.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_train_parsers(sub)
    add_checkpoint_parsers(sub)
    add_catalogue_parsers(sub)
    add_predict_parsers(sub)
    add_serve_parsers(sub)
    add_data_parsers(sub)
    add_report_parsers(sub)
    return parser


def _version() -> str:
    from digitlab import __version__

    return f"digitlab {__version__}"


def main(argv: list[str] | None = None) -> int:
    from digitlab.errors import CheckpointError, DataError  # torch-free: `--backend onnx` never loads PyTorch
    from digitlab.threads import yield_when_waiting

    yield_when_waiting()  # before any handler imports torch: libgomp reads it once, when it is loaded

    args = None
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except TrainingError as exc:  # the command was right; the run failed
        print(f"digitlab: error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, OSError, DataError, CheckpointError) as exc:
        print(f"digitlab: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        message = missing_extra(getattr(args, "command", ""), exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2


def run() -> int:
    """The installed ``digitlab`` command (and ``python -m digitlab``): ``main``, then a quicker way out.

    At exit Python collects garbage over every object still alive, and importing PyTorch makes some hundreds of
    thousands: a quarter to a third of a second that each command paid after its work was done (docs/results.md,
    'Time to accuracy'); ``collector.leave_to_the_system`` spares it.
    """
    from digitlab.collector import leave_to_the_system

    code = main()
    leave_to_the_system()
    return code


if __name__ == "__main__":
    sys.exit(run())
