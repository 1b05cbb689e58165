"""The report job of ``digitlab``: pictures of what a network learned and one HTML page (needs PyTorch).

    digitlab report                                  # the bundled model -> report/
    digitlab report runs/default --lang zh-CN        # a run: its curves too -> runs/default/report/
    digitlab report model.safetensors --out my-report --image my_seven.jpg --json
"""

from __future__ import annotations

import json


def add_report_parsers(subparsers) -> None:
    p = subparsers.add_parser("report", help="pictures of what a network learned (confusion, mistakes, filters, "
                              "feature maps...) and a self-contained report.html", fill=_options)
    p.set_defaults(handler=cmd_report)


def _options(p) -> None:
    from digitlab.cli.help import DATA_DIR_HELP
    from digitlab.languages import ALIASES, LANGUAGES

    p.add_argument("source", nargs="?", metavar="CKPT|RUN_DIR",
                   help="a .safetensors checkpoint or a run's folder (default: the bundled model)")
    p.add_argument("--out", metavar="DIR", help="the folder to write to (default: RUN_DIR/report, the checkpoint's "
                   "folder/report, or ./report for the bundled model)")
    p.add_argument("--lang", choices=[*LANGUAGES, *ALIASES], default="en",
                   help=f"language of report.html: {', '.join(f'{code} ({name})' for code, name in LANGUAGES.items())}"
                        f"; {', '.join(f'{alias} is {code}' for alias, code in ALIASES.items())} (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the numbers and the files written as one JSON object")
    p.add_argument("--overwrite", action="store_true", help="replace the report files already in --out")
    p.add_argument("--image", metavar="PATH", help="show the feature maps and the kernel lesson on your own image "
                   "(brought to MNIST form as `predict` does) instead of a test digit (default: none, test digit "
                   "--index)")
    p.add_argument("--index", type=int, default=0, help="the test digit for the feature maps and the kernel lesson "
                   "(default: %(default)s)")
    p.add_argument("--mistakes", type=int, default=100, metavar="N",
                   help="show at most N misread digits, the most confident first (default: %(default)s)")
    p.add_argument("--limit", type=int, default=0, metavar="N",
                   help="score the first N test images only; 0: all 10,000 (default: %(default)s)")
    p.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)


def cmd_report(args) -> int:
    from digitlab.training.report import write_report

    result = write_report(args.source, args.out, lang=args.lang, overwrite=args.overwrite, data_dir=args.data_dir,
                          limit=args.limit, index=args.index, image=args.image, mistakes=args.mistakes)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['arch']}: {100 * result['accuracy']:.2f}% on {result['count']:,} test images, "
              f"{result['errors']} misread")
        for path in result["files"]:
            print(f"wrote {path}")
    return 0
