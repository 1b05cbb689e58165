"""What a running server tells its operator: Prometheus metrics at ``/metrics``, a request id on every response and
access-log line, and logs as text or as one JSON object per line.

    app.add_middleware(Observe, metrics=metrics)      # outermost: it sees the Guard's refusals too
    metrics.watch(app.state)                           # in the lifespan, once the model is loaded
    GET /metrics                                       # text exposition format, from prometheus_client

The metrics (prometheus_client, each app its own registry):

    digitlab_requests_total{endpoint, status}       requests answered, by route and HTTP status (499: the client
                                                    went away before its answer, e.g. in the middle of its body)
    digitlab_request_seconds{endpoint}              latency histogram, first byte in to last byte out
    digitlab_images_recognised_total{outcome}       images read: answered (a digit or a number), unsure, unreadable
    digitlab_refused_total{reason}                  requests refused, by why (too_large, not_an_image, rate_limited...)
    digitlab_worker_restarts_total                  worker processes replaced after dying or overrunning
    digitlab_queue_depth                            requests waiting for a free worker process
    digitlab_workers                                worker processes alive

``endpoint`` is a route's path, never a raw URL, so a scanner trying random paths cannot grow the series without
bound. Each server process counts its own requests: run several behind a load balancer and let Prometheus scrape
each one (docs/scale.md, 'The server as a service').

A request keeps the ``X-Request-ID`` a proxy gave it (letters, digits, ``.-_``, at most 64) or gets a new one; it
is sent back in the response's ``X-Request-ID`` and stamped on every log record made while the request runs, so an
error in the log can be matched to the access line and to what the client saw.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
access_log = logging.getLogger("digitlab.access")

ENDPOINTS = ("/", "/api/predict", "/api/predict/batch", "/api/health", "/api/model", "/metrics", "/docs",
             "/openapi.json", "/favicon.ico")
PREFIXES = ("/static/", "/docs-assets/")
# Why a request was refused, from the status the server refused it with (serve.app and serve.gates say which is which).
REASONS = {400: "bad_request", 401: "no_api_key", 403: "cross_origin", 408: "body_too_slow", 413: "too_large",
           415: "not_an_image", 422: "unreadable", 429: "rate_limited", 431: "headers_too_large", 503: "busy"}
# The client went away before it was answered (as nginx logs it): counted as its own outcome, not as a server error.
CLIENT_CLOSED = 499
SECONDS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
INCOMING_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class Metrics:
    """The server's counters in their own registry; ``watch`` adds what the worker pool knows."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("digitlab_requests", "HTTP requests answered", ("endpoint", "status"),
                                registry=self.registry)
        self.latency = Histogram("digitlab_request_seconds", "time from a request's arrival to its answer's end",
                                 ("endpoint",), buckets=SECONDS, registry=self.registry)
        self.images = Counter("digitlab_images_recognised", "images read, by outcome", ("outcome",),
                              registry=self.registry)
        self.refused = Counter("digitlab_refused", "requests refused, by reason", ("reason",), registry=self.registry)
        self._state = None
        self.registry.register(_PoolCollector(self))

    def watch(self, state) -> None:
        """Count the images of every request ``state.recognise`` answers, and read the pool (if any) when scraped."""
        self._state = state
        recognise = state.recognise

        async def counted(*args, **kwargs) -> list[dict[str, Any]]:
            answers = await recognise(*args, **kwargs)
            for answer in answers:
                self.images.labels(_outcome(answer)).inc()
            return answers
        state.recognise = counted

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def _outcome(answer: dict[str, Any]) -> str:
    if "error" in answer:
        return "unreadable"
    found = answer.get("number") if answer.get("multi") else answer.get("digit")
    return "unsure" if found is None else "answered"


class _PoolCollector:
    """Worker restarts, queue depth and live workers, read from the pool when Prometheus scrapes (zero without one:
    a server recognising in threads has no queue of its own)."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def collect(self):
        pool = getattr(self.metrics._state, "pool", None)
        restarts = CounterMetricFamily("digitlab_worker_restarts", "worker processes replaced after dying or "
                                       "overrunning their time")
        restarts.add_metric([], getattr(pool, "restarts", 0))
        yield restarts
        yield GaugeMetricFamily("digitlab_queue_depth", "requests waiting for a free worker process",
                                value=getattr(pool, "waiting", 0))
        yield GaugeMetricFamily("digitlab_workers", "worker processes alive",
                                value=len(getattr(pool, "workers", ())))


def endpoint_of(path: str) -> str:
    if path in ENDPOINTS:
        return path
    return next((prefix + "*" for prefix in PREFIXES if path.startswith(prefix)), "other")


class Observe:
    """ASGI middleware: a request id for every request, its latency and status counted, and one access-log line."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if INCOMING_ID.fullmatch(given) else uuid.uuid4().hex
        token = request_id.set(rid)
        start, status = time.perf_counter(), None

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            status = status or 500
            raise
        finally:
            status = status or CLIENT_CLOSED  # the app ended without an answer: no one was left to answer
            seconds = time.perf_counter() - start
            endpoint = endpoint_of(scope["path"])
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(seconds)
            if status in REASONS:
                self.metrics.refused.labels(REASONS[status]).inc()
            client = scope.get("client") or ("-", 0)
            access_log.info('%s:%s "%s %s" %d %.1f ms', client[0], client[1], scope["method"], scope["path"], status,
                            1000 * seconds, extra={"method": scope["method"], "path": scope["path"],
                                                   "status": status, "ms": round(1000 * seconds, 2),
                                                   "client": client[0]})
            request_id.reset(token)


# --- logs ---------------------------------------------------------------------------------------------------------

class RequestIdFilter(logging.Filter):
    """Stamps every record with the id of the request it was made in ("-" outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and an access line's fields."""

    FIELDS = ("method", "path", "status", "ms", "client")

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
                 "request_id": getattr(record, "request_id", "-")}
        entry |= {name: getattr(record, name) for name in self.FIELDS if hasattr(record, name)}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def log_config(log_format: str, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn and digitlab: ``text`` (uvicorn's look, with the request id) or
    ``json``. uvicorn's own access log is left off: ``Observe`` writes the access lines, with the request id. The
    root logger has the same handler, so what other libraries log (python-multipart on a malformed form) and the
    warnings ``logging.captureWarnings`` routes into logging come out in the same format, not as raw text."""
    formatter = ({"()": JsonFormatter} if log_format == "json" else
                 {"format": "%(levelname)s: %(name)s: [%(request_id)s] %(message)s"})
    handler = {"class": "logging.StreamHandler", "formatter": "main", "filters": ["request_id"],
               "stream": "ext://sys.stderr"}
    loggers = {name: {"handlers": ["main"], "level": level.upper(), "propagate": False}
               for name in ("uvicorn", "digitlab")}
    return {"version": 1, "disable_existing_loggers": False,
            "filters": {"request_id": {"()": RequestIdFilter}},
            "formatters": {"main": formatter}, "handlers": {"main": handler}, "loggers": loggers,
            "root": {"handlers": ["main"], "level": "WARNING"}}
