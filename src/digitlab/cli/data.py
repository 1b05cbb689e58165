"""The data job of ``digitlab``: ``export-samples`` writes MNIST images as PNG files to try `predict` on.

    digitlab export-samples --split test --count 100 samples/
"""

from __future__ import annotations


def add_data_parsers(subparsers) -> None:
    p = subparsers.add_parser("export-samples", help="write MNIST images as PNG files plus labels.csv",
                              fill=_options)
    p.set_defaults(handler=cmd_export_samples)


def _options(p) -> None:
    from digitlab.cli.help import DATA_DIR_HELP
    from digitlab.datasets.mnist import SPLIT_SIZES

    p.add_argument("out_dir", metavar="OUT_DIR", help="the folder to write to")
    p.add_argument("--split", choices=tuple(SPLIT_SIZES), default="test", help="which MNIST set (default: %(default)s)")
    p.add_argument("--count", type=int, default=100, help="how many images (default: %(default)s)")
    p.add_argument("--start", type=int, default=0, help="index of the first image (default: %(default)s)")
    p.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)


def cmd_export_samples(args) -> int:
    from digitlab.datasets.samples import export_samples

    paths = export_samples(args.split, args.count, args.out_dir, args.data_dir, args.start)
    print(f"wrote {len(paths)} PNG files and labels.csv to {args.out_dir}")
    return 0
