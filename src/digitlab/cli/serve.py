"""The ``serve`` and ``export`` subcommands (wired into ``digitlab.cli``).

    digitlab serve                                   # the bundled model on http://127.0.0.1:8000
    digitlab serve --model model.onnx                # onnxruntime, PyTorch never imported
    digitlab export runs/x/model.safetensors --onnx model.onnx

Heavy imports (FastAPI, uvicorn, PyTorch, onnxruntime) happen inside the handlers.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from digitlab.serve.settings import ServeSettings


def add_serve_parsers(subparsers) -> None:
    # light: no torch, no onnxruntime, no FastAPI; the defaults shown are the settings' own
    from digitlab.recognition.engine import BACKENDS
    from digitlab.serve.settings import Limits, ServeSettings

    p = subparsers.add_parser("serve", help="the web page and REST API on http://HOST:PORT (docs at /docs)")
    p.add_argument("--model", help="a .safetensors checkpoint or an exported .onnx file (default: the bundled model)")
    p.add_argument("--backend", choices=tuple(BACKENDS), help="what runs the model (default: onnx for a .onnx file, "
                   "else torch)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--threshold", type=float, default=ServeSettings.threshold,
                   help=f"confidence below which the answer is 'unsure' (default: {ServeSettings.threshold})")
    p.add_argument("--workers", type=int, help="worker processes, each decoding and recognising one image at a "
                   "time with its own copy of the model (default: one per CPU)")
    p.add_argument("--threads", type=int, default=ServeSettings.threads, help="CPU threads inside one model call "
                   f"(default: {ServeSettings.threads}; the workers already run calls side by side)")
    p.add_argument("--worker-nice", type=int, metavar="N", default=ServeSettings.worker_nice,
                   help="run the workers N steps of niceness below the server, so it answers promptly when every "
                   f"CPU is busy (default: {ServeSettings.worker_nice}; 0: the same priority)")
    p.add_argument("--max-upload-mb", type=float, default=Limits.max_upload_bytes / 2**20,
                   help=f"largest request body accepted (default: {Limits.max_upload_bytes / 2**20:g})")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(handler=cmd_serve)

    p = subparsers.add_parser("export", help="write a checkpoint as ONNX, checked against PyTorch in onnxruntime")
    p.add_argument("checkpoint", nargs="?", help="a .safetensors checkpoint (default: the bundled model)")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the file to write")
    p.add_argument("--tolerance", type=float, help="largest |logit difference| accepted (default: 1e-4)")
    p.add_argument("--check-images", type=int, help="MNIST test images compared (default: 2000)")
    p.add_argument("--data-dir", help="folder with the four MNIST files (default: $DIGITLAB_DATA, then the cache)")
    p.set_defaults(handler=cmd_export)


def serve_settings(args) -> ServeSettings:
    """The command line's settings, checked by ``ServeSettings`` itself; a bad value's message names the option."""
    from digitlab.serve.settings import Limits, ServeSettings, SettingError

    if not (math.isfinite(args.max_upload_mb) and args.max_upload_mb * 2**20 >= 1):  # the one option in other units
        raise ValueError(f"--max-upload-mb must be a positive number, not {args.max_upload_mb:g}")
    try:
        return ServeSettings(model=args.model, backend=args.backend, threshold=args.threshold,
                             limits=Limits(max_upload_bytes=round(args.max_upload_mb * 2**20)),
                             processes=True, workers=args.workers, threads=args.threads, worker_nice=args.worker_nice)
    except SettingError as exc:  # every other option is named after its field
        raise ValueError(f"--{exc.name.replace('_', '-')} {exc.problem}") from None


def cmd_serve(args) -> int:
    import uvicorn

    from digitlab.serve.app import create_app

    settings = serve_settings(args)
    app = create_app(settings)
    print(f"serving {settings.model or 'the bundled model'} ({settings.backend}) on http://{args.host}:{args.port} "
          f"- API docs at /docs", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def cmd_export(args) -> int:
    from digitlab.training.export import ExportError, export_onnx

    if not args.onnx.endswith(".onnx"):
        raise ValueError(f"--onnx {args.onnx}: the output file should end in .onnx")
    if args.check_images is not None and args.check_images < 1:
        raise ValueError("--check-images must be at least 1")
    given = {name: getattr(args, name) for name in ("tolerance", "check_images") if getattr(args, name) is not None}
    try:
        report = export_onnx(args.checkpoint, args.onnx, data_dir=args.data_dir, **given)
    except ExportError as exc:
        print(f"digitlab export: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {report.path} ({report.size_bytes / 1e6:.2f} MB, dynamic batch axis): onnxruntime matches PyTorch "
          f"on {report.images_checked} MNIST test images, max |logit difference| {report.max_abs_diff:.2g}, "
          f"same class for {report.agreement:.2%}")
    return 0

