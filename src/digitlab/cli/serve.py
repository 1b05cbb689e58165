"""The ``serve`` subcommand (wired into ``digitlab.cli``).

    digitlab serve                                   # the bundled model on http://127.0.0.1:8000
    digitlab serve --model model.onnx                # onnxruntime, PyTorch never imported

Heavy imports (FastAPI, uvicorn, onnxruntime) happen inside the handlers.
"""

from __future__ import annotations

import sys
from pathlib import Path

BACKENDS = ("torch", "onnx")


def add_serve_parsers(subparsers) -> None:
    from digitlab.recognition.predict import DEFAULT_THRESHOLD  # light: no torch, no onnxruntime

    p = subparsers.add_parser("serve", help="the web page and REST API on http://HOST:PORT (docs at /docs)")
    p.add_argument("--model", help="a .safetensors checkpoint or an exported .onnx file (default: the bundled model)")
    p.add_argument("--backend", choices=BACKENDS, help="what runs the model (default: onnx for a .onnx file, "
                   "else torch)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"confidence below which the answer is 'unsure' (default: {DEFAULT_THRESHOLD})")
    p.add_argument("--workers", type=int, help="worker processes, each decoding and recognising one image at a "
                   "time with its own copy of the model (default: one per CPU)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads inside one model call (default: 1; the "
                   "workers already run calls side by side)")
    p.add_argument("--worker-nice", type=int, metavar="N", help="run the workers N steps of niceness below the "
                   "server, so it answers promptly when every CPU is busy (default: 10, serve.workers.WORKER_NICE; "
                   "0: the same priority)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest request body accepted (default: 10)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(handler=cmd_serve)


def cmd_serve(args) -> int:
    import uvicorn

    from digitlab.recognition.engine import BUNDLED_ONNX, backend_for
    from digitlab.serve.app import Limits, create_app

    backend = backend_for(args.model, args.backend)
    if not 0.0 <= args.threshold <= 1.0:
        raise ValueError(f"--threshold must be between 0 and 1, not {args.threshold}")
    if args.max_upload_mb <= 0:
        raise ValueError("--max-upload-mb must be positive")
    if args.threads < 1 or (args.workers is not None and args.workers < 1):
        raise ValueError("--threads and --workers must be at least 1")
    if args.worker_nice is not None and not 0 <= args.worker_nice <= 19:
        raise ValueError("--worker-nice must be between 0 and 19")
    if args.model is not None and not Path(args.model).is_file():  # one line here, not a failed start-up later
        raise ValueError(f"--model {args.model}: no such file")
    if backend == "onnx" and args.model is None and not BUNDLED_ONNX.is_file():
        raise ValueError("no bundled ONNX model in this install: pass --model FILE.onnx (see `digitlab export`)")
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 2**20))
    app = create_app(args.model, backend, limits=limits, workers=args.workers,
                     engine_options={"threads": args.threads},  # per worker process, for either backend
                     threshold=args.threshold, processes=True, worker_nice=args.worker_nice)
    print(f"serving {args.model or 'the bundled model'} ({backend}) on http://{args.host}:{args.port} "
          f"- API docs at /docs", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
