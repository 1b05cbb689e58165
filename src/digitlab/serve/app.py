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
or a missing form field is 422. The model is loaded once, in the lifespan. Images are decoded and recognised (and
corrected drawings saved) by ``serve.runner`` in threads sharing one engine (both backends are thread-safe for
inference) or, as ``digitlab serve`` runs it, in worker processes with an engine each (``serve.workers``), so the
event loop keeps accepting requests and the HTTP process never holds a decoded image. How is said once, in a
``ServeSettings``.

    uvicorn --factory digitlab.serve.app:create_app      # or: digitlab serve --backend onnx --model m.onnx
"""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
from anyio import CapacityLimiter, to_thread
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile

from digitlab.recognition.predict import default_threshold
from digitlab.recognition.preprocess import POLARITIES
from digitlab.serve import runner, samples, schemas
from digitlab.serve.gates import ApiError, BodyLimit, Guard
from digitlab.serve.observe import Metrics, Observe
from digitlab.serve.settings import Limits, ServeSettings
from digitlab.serve.workers import Busy, WorkerPool

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("digitlab.serve")


def public_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """What ``/api/model`` tells anyone who asks: the network, its classes and normalisation, how it scored and its
    training settings, but not the command line, paths or package versions of the machine it was trained on."""
    public = {key: metadata[key] for key in PUBLIC_METADATA if key in metadata}
    if isinstance(public.get("config"), dict):
        public["config"] = {k: v for k, v in public["config"].items() if k != "data_dir"}
    return public


PUBLIC_METADATA = ("format", "arch", "arch_kwargs", "classes", "normalisation", "input", "config", "epoch",
                   "metrics", "test", "test_tta", "calibration")


async def one_image(request: Request, limits: Limits) -> tuple[str, bytes]:
    """The image of a request: its body, or the multipart field ``file``; and its name."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        upload = (await form_files(request, "file", limits))[0]
        return upload.filename or "upload", await upload.read()
    return "body", await request.body()


async def form_files(request: Request, field: str, limits: Limits) -> list[UploadFile]:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(415, f"send the images as multipart/form-data in the field '{field}'")
    form = await request.form(max_files=limits.max_batch_files, max_fields=limits.max_batch_files)
    files = [item for item in form.getlist(field) if isinstance(item, UploadFile)]
    if not files:
        fields = ", ".join(repr(name) for name in form.keys()) or "none"
        raise ApiError(422, f"no file in the form field '{field}' (fields sent: {fields})")
    return files


# --- the app ------------------------------------------------------------------------------------------------------

# The query parameters are read by ``options`` rather than declared in the handlers' signatures: FastAPI's
# per-request validation of declared parameters was a large share of the HTTP process's CPU under load
# (measured: docs/serving.md, 'Where a request's CPU goes'). They are documented in the OpenAPI schema all the same.
QUERY = [
    {"name": "multi", "in": "query", "required": False, "schema": {"type": "boolean", "default": False},
     "description": "read a number: every digit left to right, with its box"},
    {"name": "polarity", "in": "query", "required": False,
     "schema": {"type": "string", "enum": list(POLARITIES), "default": "auto"},
     "description": "dark ink on light paper, light on dark, or detect it"},
    {"name": "threshold", "in": "query", "required": False,
     "schema": {"type": "number", "minimum": 0.0, "maximum": 1.0},
     "description": "below this confidence the answer is 'unsure' (digit null); default: the server's"},
]
STEPS = {"name": "steps", "in": "query", "required": False, "schema": {"type": "boolean", "default": False},
         "description": "also answer how the image was read: the preprocessing's images between its steps"}
IMAGE_BODY = {"parameters": [*QUERY, STEPS], "requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
    **{kind: {"schema": {"type": "string", "format": "binary"}}
       for kind in ("image/png", "image/jpeg", "image/webp", "application/octet-stream")},
}}}
BATCH_BODY = {"parameters": QUERY, "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"}}}}}}}}
ERRORS = {status: {"description": description, "model": schemas.ErrorAnswer} for status, description in {
    400: "a malformed request: invalid multipart data, too many files, a bad Content-Length",
    401: "an API key is needed (a server started with --api-key)",
    403: "a cross-origin request from a browser",
    408: "the request body stopped arriving",
    413: "body or image too large", 415: "not an image",
    422: "empty, truncated or corrupt image, a missing form field, or a bad query parameter",
    429: "too many requests or uploads at once from one address; see Retry-After",
    431: "request headers too large",
    503: "busy: too many requests waiting, or the images took too long; see Retry-After"}.items()}
SAMPLE_BODY = {"parameters": [
    {"name": "label", "in": "query", "required": True,
     "schema": {"type": "string", "enum": list(samples.LABELS)}, "description": "the right answer"},
    {"name": "answer", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 40},
     "description": "what the model answered, kept in the sidecar"},
], "requestBody": IMAGE_BODY["requestBody"]}
TRUE, FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def flag(request: Request, name: str) -> bool:
    """A true-or-false query parameter (false when absent), or a 422."""
    value = request.query_params.get(name, "false").lower()
    if value not in TRUE | FALSE:
        raise ApiError(422, f"{name} must be true or false, not {value!r}")
    return value in TRUE


def options(request: Request) -> tuple[str, float | None, bool]:
    """The request's ``polarity``, ``threshold`` (None: the server's) and ``multi``, or a 422 that says what is
    wrong with them."""
    query = request.query_params
    multi = flag(request, "multi")
    polarity = query.get("polarity", "auto")
    if polarity not in POLARITIES:
        raise ApiError(422, f"polarity must be one of {', '.join(POLARITIES)}, not {polarity!r}")
    threshold = query.get("threshold")
    if threshold is not None:
        try:
            threshold = float(threshold)
        except ValueError:
            raise ApiError(422, f"threshold must be a number from 0 to 1, not {threshold!r}") from None
        if not 0.0 <= threshold <= 1.0:  # NaN fails this too
            raise ApiError(422, f"threshold must be from 0 to 1, not {threshold}")
    return polarity, threshold, multi


def add_offline_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the files the swagger-ui-bundle package ships, so the docs work offline too
    (FastAPI's default page fetches them from a CDN)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="digitlab API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css", swagger_favicon_url="/favicon.ico")


@asynccontextmanager
async def _process_lifespan(app: FastAPI):
    """Start the worker processes (each loads the model) and stop them at the end."""
    settings: ServeSettings = app.state.settings
    pool = WorkerPool(settings)
    await pool.start()
    app.state.pool, app.state.metadata, app.state.recognise = pool, pool.metadata, pool.recognise
    app.state.save_sample = pool.save_sample
    log.info("model %s loaded in %d worker processes (%s backend)", pool.metadata.get("arch"), settings.worker_count,
             settings.backend)
    try:
        yield
    finally:
        await pool.close()


@asynccontextmanager
async def _thread_lifespan(app: FastAPI):
    """Load the model once in this process; requests are recognised (and samples saved) in its threads, one per CPU
    at most."""
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


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """The app serving ``settings`` (None: the bundled model, recognised in threads of this process).

    Nothing is loaded here; the model is loaded when the app starts (its lifespan): in ``settings.workers``
    worker processes with an engine each when ``settings.processes`` (what ``digitlab serve`` runs, since threads
    share one GIL), else in threads of this process sharing one engine. Either way at most as many requests are
    recognised at once as there are worker processes (or, in threads, CPUs); further requests wait their turn in
    order.
    """
    settings = ServeSettings() if settings is None else settings
    limits, backend, threshold = settings.limits, settings.backend, settings.threshold

    app = FastAPI(title="digitlab", version=_version(), docs_url=None, redoc_url=None,  # ReDoc would load a CDN
                  lifespan=_observed(_process_lifespan if settings.processes else _thread_lifespan),
                  description="Recognise handwritten digits in images: one digit, or a number with ?multi=true.")
    # The packaged Swagger UI reads OpenAPI 3.0 only: the schema is written as 3.0.3 (schemas.openapi_3_0 rewrites
    # pydantic's 3.1 forms), so /docs renders it offline (tests/serve/test_browser.py opens it).
    app.openapi_version = "3.0.3"

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = schemas.openapi_3_0(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi
    app.state.settings = settings
    app.add_middleware(BodyLimit, limits=limits)
    if settings.cors_origins:  # the named sites' pages may call the API (preflight answered here)
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "X-API-Key", "Authorization"])
    app.add_middleware(Guard, settings=settings)
    app.state.metrics = Metrics()
    app.add_middleware(Observe, metrics=app.state.metrics)  # added last, so it runs first: it sees every refusal
    add_offline_docs(app)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy):
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.exception("unhandled error in %s %s", request.method, request.url.path)  # the traceback stays here
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon")

    # The answers are sent as the dicts serve.runner made (a JSONResponse is not validated again); response_model
    # only publishes their schema.
    @app.post("/api/predict", openapi_extra=IMAGE_BODY, responses=ERRORS, response_model=schemas.PredictAnswer)
    async def predict(request: Request) -> JSONResponse:
        """Recognise one image: ``digit``, ``confidence``, ``probabilities``, ``box`` and ``image`` (the 28x28
        input the model saw); with ``multi=true`` the ``number`` and per-digit ``digits`` with boxes. ``digit`` is
        null and ``reason`` says why when the model is unsure or the image is blank. With ``steps=true``, ``steps``
        shows how the image was read (the first digit's way through the preprocessing)."""
        polarity, threshold, multi = options(request)
        steps = flag(request, "steps")
        name, data = await one_image(request, limits)
        result = (await request.app.state.recognise(polarity, threshold, [(name, data)], multi, steps))[0]
        if "error" in result and "status" in result:
            raise ApiError(result["status"], result["error"])
        return JSONResponse(result)  # already plain JSON types: no second pass through pydantic

    @app.post("/api/predict/batch", openapi_extra=BATCH_BODY, responses=ERRORS, response_model=schemas.BatchAnswer)
    async def predict_batch(request: Request) -> JSONResponse:
        """Recognise several images in one model call: ``results`` in the order sent, an unreadable file answering
        ``error`` and ``status`` in its place while the others are read."""
        polarity, threshold, multi = options(request)
        files = await form_files(request, "files", limits)
        items = [(upload.filename or f"file {i}", await upload.read()) for i, upload in enumerate(files)]
        # each file is held to the one-image limit too; one over it answers 413 in its place, the others are read
        fits = [i for i, (_, data) in enumerate(items) if len(data) <= limits.max_upload_bytes]
        results: list[dict[str, Any]] = [
            {"name": name, "error": f"file too large: {len(data):,} bytes is over the limit of "
                                    f"{limits.max_upload_bytes:,} for one image", "status": 413}
            for name, data in items]
        if fits:
            read = await request.app.state.recognise(polarity, threshold, [items[i] for i in fits], multi)
            for i, answer in zip(fits, read):
                results[i] = answer
        return JSONResponse({"results": results})

    @app.get("/api/health", response_model=schemas.HealthAnswer)
    async def health(request: Request) -> dict[str, Any]:
        metadata = getattr(request.app.state, "metadata", None)
        return {"status": "ok" if metadata is not None else "loading", "backend": backend,
                "model": metadata.get("arch") if metadata is not None else None}

    @app.get("/api/model", response_model=schemas.ModelAnswer, responses={401: ERRORS[401], 429: ERRORS[429]})
    async def model(request: Request) -> dict[str, Any]:
        """The model's public metadata (network, classes, normalisation, training settings, scores, calibration)
        and how it is served."""
        served = default_threshold(request.app.state.metadata) if threshold is None else threshold
        return {"backend": backend, "threshold": served, "metadata": public_metadata(request.app.state.metadata),
                "limits": asdict(limits), "collecting": settings.collect is not None}

    @app.post("/api/samples", openapi_extra=SAMPLE_BODY, response_model=schemas.SampleAnswer,
              responses={404: {"description": "collecting is off (the server was not started with --collect DIR)",
                               "model": schemas.ErrorAnswer}, **ERRORS})
    async def add_sample(request: Request) -> dict[str, str]:
        """Teach the model: save an image it read wrong with the right ``label``, as ``DIR/<label>/NAME.png`` and
        its sidecar ``NAME.json`` (time, model, the answer it gave), for fine-tuning. Only on a server started with
        ``--collect DIR``."""
        if settings.collect is None:
            raise ApiError(404, "collecting is off: start the server with --collect DIR to save corrected drawings")
        label, answer = request.query_params.get("label", ""), request.query_params.get("answer")
        try:
            samples.check_label(label)
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        if answer is not None and (len(answer) > 40 or not answer.isprintable()):
            raise ApiError(422, "answer must be at most 40 printable characters")
        name, data = await one_image(request, limits)
        if not data:
            raise ApiError(422, runner.EMPTY)
        model = {"arch": request.app.state.metadata.get("arch"), "backend": backend,
                 "file": Path(settings.model).name if settings.model else "bundled"}
        # decoded and written where images are recognised, waiting its turn and held to a request's time
        saved = await request.app.state.save_sample(label, data, answer, model, name)
        if "error" in saved:
            raise ApiError(saved["status"], saved["error"])
        return {"label": label, "path": saved["path"]}

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        """Prometheus text format (serve.observe); under the API key when the server has one."""
        return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _version() -> str:
    from digitlab import __version__

    return __version__
