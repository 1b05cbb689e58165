"""The web page and the REST API around one model: ``create_app()`` builds the FastAPI app ``digitlab serve`` runs.

    GET  /                    the page: draw a digit or drop an image (static files, no build step)
    POST /api/predict         one image, as the raw request body or the multipart field ``file``
                              (?multi=true reads a number; ?polarity=, ?threshold= as in `digitlab predict`)
    POST /api/predict/batch   several images in the multipart field ``files``: one result (or error) per file
    GET  /api/health          is the model loaded
    GET  /api/model           the checkpoint's metadata
    POST /api/samples         ?label=3: save an image the model read wrong, for fine-tuning (only with --collect DIR)
    GET  /metrics             Prometheus metrics (serve.observe): requests, latency, images, refusals, workers
    GET  /docs                OpenAPI documentation

Every image goes through ``predict.Recognizer`` and so through ``preprocess`` - the one preprocessing path, which
also decides what cannot be read and why (``ImageError.kind``); the server only turns that into a status. The
answer includes the 28x28 image the model saw, as a PNG data URL, so the page can show it.

Bad input is an HTTP error with a one-line ``detail``, never a traceback: a body over the size limit is 413 (from
its Content-Length, or counted as it streams in); an image with too many pixels is 413, refused from its header
before a byte of it is decoded; something that is not an image is 415; a truncated or corrupt image, an empty body
or a missing form field is 422. The model is loaded before the app answers: in the lifespan, or by the worker
processes `digitlab serve` starts while it imports this module. Images are decoded and recognised (and
corrected drawings saved) by ``serve.runner`` in threads sharing one engine (both backends are thread-safe for
inference) or, as ``digitlab serve`` runs it, in worker processes with an engine each (``serve.workers``), so the
event loop keeps accepting requests and the HTTP process never holds a decoded image (nor, with worker
processes, imports numpy, OpenCV or Pillow: tests/test_layout.py checks it). How is said once, in a
``ServeSettings``. The handlers live in ``serve.routes``, a router per area; this module assembles them.

    uvicorn --factory digitlab.serve.app:create_app      # or: digitlab serve --backend onnx --model m.onnx
"""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from typing import Any

from anyio import CapacityLimiter, to_thread
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from digitlab.serve import schemas
from digitlab.serve.gates import ApiError, BodyLimit, Guard
from digitlab.serve.observe import Metrics, Observe
from digitlab.serve.routes import meta, pages, predict, samples
from digitlab.serve.settings import ServeSettings
from digitlab.serve.workers import Busy, WorkerPool

log = logging.getLogger("digitlab.serve")


@asynccontextmanager
async def _process_lifespan(app: FastAPI):
    """Start the worker processes (each loads the model; the app answers once the first has), unless they were started
    with the app, and stop them at the end."""
    settings: ServeSettings = app.state.settings
    pool = getattr(app.state, "pool", None)
    if pool is None:
        pool = WorkerPool(settings)
        await pool.start()
    app.state.pool, app.state.metadata, app.state.recognise = pool, pool.metadata, pool.recognise
    app.state.save_sample = pool.save_sample
    log.info("model %s loaded (%s backend) in the first of %d worker processes; the others join as they load it",
             pool.metadata.get("arch"), settings.backend, settings.worker_count)
    try:
        yield
    finally:
        await pool.close()


@asynccontextmanager
async def _thread_lifespan(app: FastAPI):
    """Load the model once in this process; requests are recognised (and samples saved) in its threads, one per CPU
    at most. Only this strategy reads images in this process, so only it imports what reads them."""
    import cv2

    from digitlab.serve import runner

    settings: ServeSettings = app.state.settings
    # Process-wide, and this server runs its requests side by side: OpenCV splitting each image across threads
    # too would only compete with them.
    cv2.setNumThreads(1)
    engine = runner.load_engine_for(settings)
    recognizer = runner.load_recognizer(settings, engine)
    limiter = CapacityLimiter(os.cpu_count() or 1)

    async def recognise(polarity: str, threshold: float | None, items: list[tuple[str, bytes]],
                        multi: bool, steps: bool = False) -> list[dict[str, Any]]:
        return await to_thread.run_sync(runner.recognise, recognizer, items, multi, polarity, threshold, steps,
                                        limiter=limiter)

    async def save_sample(label: str, data: bytes, answer: str | None, model: dict[str, Any],
                          source: str) -> dict[str, Any]:
        return await to_thread.run_sync(runner.save_sample, settings, label, data, answer, model, source,
                                        limiter=limiter)

    app.state.engine, app.state.metadata, app.state.recognise = engine, engine.metadata, recognise
    app.state.save_sample = save_sample
    log.info("model %s loaded (%s backend)", engine.metadata.get("arch"), settings.backend)
    yield


def _observed(lifespan):
    """``lifespan``, then the metrics watch what it set up: the images each request reads, the worker pool."""
    @asynccontextmanager
    async def observed(app: FastAPI):
        async with lifespan(app):
            app.state.metrics.watch(app.state)
            yield
    return observed


def create_app(settings: ServeSettings | None = None, pool: WorkerPool | None = None) -> FastAPI:
    """The app serving ``settings`` (None: the bundled model, recognised in threads of this process).

    Nothing is loaded here; the model is loaded when the app starts (its lifespan): in ``settings.workers``
    worker processes with an engine each when ``settings.processes`` (what ``digitlab serve`` runs, since threads
    share one GIL), else in threads of this process sharing one engine. Either way at most as many requests are
    recognised at once as there are worker processes (or, in threads, CPUs); further requests wait their turn in
    order. ``pool``: the settings' worker processes, already started (``digitlab serve`` starts them while it imports
    this module), which the app then serves with and stops at its end.
    """
    from swagger_ui_bundle import swagger_ui_path

    settings = ServeSettings() if settings is None else settings
    if pool is not None and (not settings.processes or pool.settings != settings):
        raise ValueError("create_app: a worker pool is for the settings it was started with, with processes=True")
    app = FastAPI(title="digitlab", version=_version(), docs_url=None, redoc_url=None,  # ReDoc would load a CDN
                  lifespan=_observed(_process_lifespan if settings.processes else _thread_lifespan),
                  description="Recognise handwritten digits in images: one digit, or a number with ?multi=true.",
                  exception_handlers={ApiError: _api_error, Busy: _busy, Exception: _internal_error})
    # The packaged Swagger UI reads OpenAPI 3.0 only: the schema is written as 3.0.3 (schemas.openapi_3_0 rewrites
    # pydantic's 3.1 forms), so /docs renders it offline (tests/serve/test_browser.py opens it).
    app.openapi_version = "3.0.3"
    app.openapi = lambda: _openapi_3_0(app)
    app.state.settings = settings
    if pool is not None:
        app.state.pool = pool
    app.add_middleware(BodyLimit, limits=settings.limits)
    if settings.cors_origins:  # the named sites' pages may call the API (preflight answered here)
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "X-API-Key", "Authorization"])
    app.add_middleware(Guard, settings=settings)
    app.state.metrics = Metrics()
    app.add_middleware(Observe, metrics=app.state.metrics)  # added last, so it runs first: it sees every refusal
    for area in (pages, predict, samples, meta):
        app.include_router(area.router)
    app.mount(pages.DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
    app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")
    return app


def _openapi_3_0(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        app.openapi_schema = schemas.openapi_3_0(FastAPI.openapi(app))
    return app.openapi_schema


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)


async def _busy(request: Request, exc: Busy) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after)})


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in %s %s", request.method, request.url.path)  # the traceback stays here
    return JSONResponse({"detail": "internal server error"}, status_code=500)


def _version() -> str:
    from digitlab import __version__

    return __version__
