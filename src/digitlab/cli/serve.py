"""The ``serve`` subcommand (wired into ``digitlab.cli``).

    digitlab serve                                   # the bundled model on http://127.0.0.1:8000
    digitlab serve --model model.onnx                # onnxruntime, PyTorch never imported

Heavy imports (FastAPI, uvicorn, onnxruntime) happen inside the handlers.
"""

from __future__ import annotations

import logging.config
import math
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from digitlab.serve.settings import ServeSettings


def add_serve_parsers(subparsers) -> None:
    # light: no torch, no onnxruntime, no FastAPI; the defaults shown are the settings' own
    from digitlab.recognition.backends import BACKENDS
    from digitlab.serve.settings import LOG_FORMATS, Limits, ServeSettings

    p = subparsers.add_parser("serve", help="the web page and REST API on http://HOST:PORT (docs at /docs)")
    p.add_argument("--model", help="a .safetensors checkpoint or an exported .onnx file (default: the bundled model)")
    p.add_argument("--backend", choices=tuple(BACKENDS), help="what runs the model (default: onnx for a .onnx "
                   "file and for a checkpoint with its own export beside it, as the bundled model has; else torch)")
    p.add_argument("--int8", action="store_true", help="serve the bundled model's int8 export on onnxruntime: "
                   "faster, its MNIST test accuracy within 0.05 points (docs/serving.md, \"int8\"; default: fp32)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=port_number, default=8000, help="TCP port to listen on, 1-65535 (default: 8000)")
    p.add_argument("--threshold", type=float, default=ServeSettings.threshold,
                   help="confidence below which the answer is 'unsure' (default: the model's, as for `digitlab "
                        "predict`)")
    p.add_argument("--workers", type=int, help="worker processes, each decoding and recognising one image at a "
                   "time with its own copy of the model (default: one per CPU)")
    p.add_argument("--threads", type=int, default=ServeSettings.threads, help="CPU threads inside one model call "
                   f"(default: {ServeSettings.threads}; the workers already run calls side by side)")
    p.add_argument("--worker-nice", type=int, metavar="N", default=ServeSettings.worker_nice,
                   help="run the workers N steps of niceness below the server, so it answers promptly when every "
                   f"CPU is busy (default: {ServeSettings.worker_nice}; 0: the same priority)")
    p.add_argument("--max-upload-mb", type=float, default=Limits.max_upload_bytes / 2**20,
                   help=f"largest request body accepted (default: {Limits.max_upload_bytes / 2**20:g})")
    p.add_argument("--api-key", default=os.environ.get("DIGITLAB_API_KEY"), metavar="KEY",
                   help="require this key (X-API-Key or Authorization: Bearer) on the API, all but /api/health; the "
                        "page takes it as /#key=KEY (default: $DIGITLAB_API_KEY, else none; the environment keeps it "
                        "out of the process list)")
    p.add_argument("--rate-limit", type=int, metavar="N", help="at most N API requests a minute from one client "
                   "address, more answered 429 (default: no limit)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="answer only requests whose Host header names NAME (e.g. digits.example.org; repeat for more): "
                        "other names get 400 (default: a server on 127.0.0.1 answers 127.0.0.1 and localhost only, "
                        "one on another address any name)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="URL",
                   help="a site (e.g. https://example.org) whose pages may call the API from a browser; repeat for "
                        "more (default: none, only this server's own page)")
    p.add_argument("--collect", metavar="DIR", help="let people teach the page: a drawing it read wrong is saved, "
                   "with the digit they pick, as DIR/<digit>/NAME.png and NAME.json (POST /api/samples; default: off)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                   help="how much uvicorn and digitlab log (default: info)")
    p.add_argument("--log-format", default=ServeSettings.log_format, choices=LOG_FORMATS,
                   help="log lines as text or as one JSON object each, for a log collector; every line made while a "
                        "request runs carries its request id (default: text)")
    p.set_defaults(handler=cmd_serve)


def port_number(text: str) -> int:
    """A TCP port, 1-65535, for argparse (which words the refusal as one line, exit 2)."""
    import argparse

    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 1 to 65535, not {port}")
    return port


def check_port_free(host: str, port: int) -> None:
    """Refuse, in one line, an address this process cannot listen on (a port in use, a host not of this machine),
    before the model is loaded and before uvicorn would say it in its own words."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ValueError(f"cannot listen on {host}:{port}: {_why_not(exc, port)}") from None


def _why_not(exc: OSError, port: int) -> str:
    """What a failed bind means for the person who asked for it, by its errno."""
    import errno

    if exc.errno in (errno.EACCES, errno.EPERM):
        below = " ports below 1024 need privileges (root or CAP_NET_BIND_SERVICE);" if port < 1024 else ""
        return f"permission denied:{below} choose another with --port"
    if exc.errno == errno.EADDRINUSE:
        return "the port is in use (another server on that port?); choose another with --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "that address is not one of this machine's; choose another with --host"
    return f"{exc.strerror or exc}; choose another address with --host or --port"


def serve_settings(args) -> ServeSettings:
    """The command line's settings, checked by ``ServeSettings`` itself; a bad value's message names the option."""
    from digitlab.serve.settings import Limits, ServeSettings, SettingError

    if not (math.isfinite(args.max_upload_mb) and args.max_upload_mb * 2**20 >= 1):  # the one option in other units
        raise ValueError(f"--max-upload-mb must be a positive number, not {args.max_upload_mb:g}")
    if args.int8:
        from digitlab.recognition.backends import bundled_int8

        args.model, args.backend = bundled_int8(args.model, args.backend), "onnx"
    try:
        return ServeSettings(model=args.model, backend=args.backend, threshold=args.threshold,
                             limits=Limits(max_upload_bytes=round(args.max_upload_mb * 2**20)),
                             processes=True, workers=args.workers, threads=args.threads, worker_nice=args.worker_nice,
                             allowed_hosts=allowed_hosts(args.host, args.allowed_host),
                             api_key=args.api_key or None, rate_per_minute=args.rate_limit,
                             cors_origins=tuple(origin.rstrip("/") for origin in args.cors_origin),
                             collect=args.collect, log_format=args.log_format)
    except SettingError as exc:  # every other option is named after its field
        raise ValueError(f"--{exc.name.replace('_', '-')} {exc.problem}") from None


def allowed_hosts(host: str, named: list[str]) -> tuple[str, ...] | None:
    """The Host header names a server listening on ``host`` answers: those named with --allowed-host (written as a
    Host header carries them: lower case, an IPv6 address in brackets), and for a loopback address its own names
    too; None (any name) for another address with none named."""
    from digitlab.serve.settings import LOOPBACK_HOSTS

    names = []
    for name in (name.strip().lower() for name in named):
        if not name or "/" in name or any(c.isspace() for c in name) or name.count(":") == 1:
            raise ValueError(f"--allowed-host takes a host name or address without scheme, port or path (e.g. "
                             f"digits.example.org), not {name!r}")
        names.append(f"[{name}]" if ":" in name and not name.startswith("[") else name)
    if host in LOOPBACK_HOSTS:
        return LOOPBACK_HOSTS + tuple(name for name in names if name not in LOOPBACK_HOSTS)
    return tuple(names) or None


def cmd_serve(args) -> int:
    import asyncio

    settings = serve_settings(args)
    check_port_free(args.host, args.port)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        try:
            return runner.run(_start_and_serve(settings, args))
        except KeyboardInterrupt:  # Ctrl-C, once the server has shut down
            return 0


async def _start_and_serve(settings: ServeSettings, args) -> int:
    """Start the worker processes, which load the model, while this process imports the web stack, on the other
    CPUs rather than after it (benchmarks/speed_floor.py); then serve, on the loop the workers' pipes belong to.
    A model that cannot be loaded ends it here, before uvicorn starts, in the one line its first worker said."""
    import asyncio

    from digitlab.serve.workers import WorkerError, WorkerPool

    pool = WorkerPool(settings)
    starting = asyncio.create_task(pool.start())
    try:
        uvicorn, create_app, http_options, log_config = await asyncio.to_thread(_web_stack)
        try:
            await starting
        except WorkerError:  # the worker has said why, in one line
            return 2
        app = create_app(settings, pool)  # its lifespan stops the workers when the server stops
        logging.config.dictConfig(log_config(args.log_format, args.log_level))
        log = logging.getLogger("digitlab.serve")
        log.info("serving %s (%s) on http://%s:%s - API docs at /docs", settings.model or "the bundled model",
                 settings.backend, args.host, args.port)
        if settings.collect is not None:
            log.info("corrected drawings are saved in %s", os.path.abspath(settings.collect))
        # the access log is digitlab's (serve.observe), with each request's id; uvicorn's own would lack it
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False,
                                log_config=log_config(args.log_format, args.log_level),
                                **http_options(settings.limits))
        await uvicorn.Server(config).serve()
        return 0
    finally:  # on the way out, however early: no worker is left running
        starting.cancel()  # nothing, once it is done
        await asyncio.gather(starting, return_exceptions=True)
        await pool.close()


def _web_stack():
    """What serving needs beyond the workers: uvicorn, FastAPI and the app, imported in a thread of its own while the
    event loop starts the workers."""
    import uvicorn

    from digitlab.serve.app import create_app
    from digitlab.serve.gates import http_options
    from digitlab.serve.observe import log_config

    return uvicorn, create_app, http_options, log_config


def _loop_factory():
    """uvloop's event loop when installed, as uvicorn picks it (the ``serve`` extra installs it); else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
