"""The catalogue of ``digitlab``: the networks it can build and the recipes it can train (all need PyTorch).

    digitlab models
    digitlab summary digitnet
    digitlab summary runs/default/model.safetensors
    digitlab recipes
"""

from __future__ import annotations

import os
from pathlib import Path

# Where `digitlab recipes` sends a reader for what each recipe was measured to reach, and how long it took: the
# figures change as recipes are retuned and machines differ, so they live in the docs beside their commands.
RESULTS = ("What each recipe reaches and how long it trains, with the command and the machine: docs/results.md\n"
           "('Accuracy', 'Training time', 'Time to accuracy'); each recipe described: docs/networks.md ('The recipes')")


def add_catalogue_parsers(subparsers) -> None:
    p = subparsers.add_parser("models", help="list the registered networks with their parameter counts")
    p.set_defaults(handler=cmd_models)

    p = subparsers.add_parser("summary", help="print a Keras-style layer table of a network or a checkpoint")
    p.add_argument("name", metavar="NAME|CKPT", help="a network name from `digitlab models`, or a .safetensors "
                   "checkpoint (its network as built, e.g. with the 11th output)")
    p.set_defaults(handler=cmd_summary)

    p = subparsers.add_parser("recipes", help="list the named recipes and their main settings (what each reaches: "
                              "docs/results.md)")
    p.set_defaults(handler=cmd_recipes)


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
