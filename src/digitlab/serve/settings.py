"""How a server runs: ``ServeSettings``, built once (by ``digitlab serve`` from its options, or by a Python caller)
and handed whole to ``create_app`` and, as JSON, to every worker process.

    settings = ServeSettings(model="model.onnx", workers=2, limits=Limits(max_upload_bytes=2**20))
    app = create_app(settings)
    ServeSettings.from_json(settings.to_json()) == settings       # what a worker process receives

Every value is checked here, when the settings are made, so the command line and Python callers get the same
checks and the same messages. Torch-free and FastAPI-free: a worker process imports it too.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from digitlab.recognition.backends import BACKENDS, BUNDLED_ONNX, backend_for
from digitlab.recognition.facts import MAX_PIXELS, check_threshold

# Added to the worker processes' niceness, so that when every CPU is busy the server process still gets one at once
# to read a request, hand it on and send an answer (measured: docs/serving.md, 'Worker priority'). Lowering a process's
# priority needs no privileges.
WORKER_NICE = 10
# A server that listens on this machine only answers requests that name it so: a page on another site could
# otherwise point a host name of its own at 127.0.0.1 (DNS rebinding) and read the answers.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
LOG_FORMATS = ("text", "json")  # log lines as text, or as one JSON object each (serve.observe.log_config)


class SettingError(ValueError):
    """A setting with a value it cannot take: ``name`` is the field, ``problem`` the rest of the one-line message
    (so the command line can name its own option instead)."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"{name} {problem}")
        self.name, self.problem = name, problem


@dataclass(frozen=True)
class Limits:
    """What one request may send (anything over a limit is refused with 413 before it is decoded), and, with worker
    processes, how many requests may wait for a worker and how long one may hold it (503 beyond either)."""

    max_upload_bytes: int = 10 * 2**20    # the body of POST /api/predict
    max_batch_bytes: int = 50 * 2**20     # the body of POST /api/predict/batch
    max_batch_files: int = 64
    max_pixels: int = MAX_PIXELS          # width x height, read from the header before decoding
    max_sample_pixels: int = 4_000_000    # the same for POST /api/samples, which decodes an image whole to keep it:
                                          # a drawing or a photo of one digit needs no more, and a sample then holds
                                          # a worker a fraction of a second, not seconds
    max_waiting: int = 256                # requests waiting for a worker; one more is answered 503 at once
    max_seconds: int = 30                 # a request's time in a worker; past it the worker is replaced, 503
    body_seconds: int = 30                # the longest wait for the next piece of a body; past it 408
    max_body_seconds: int = 120           # the longest a whole body may take to arrive; past it 408
    max_uploads: int = 32                 # bodies arriving at once; one more is answered 503 before it is read
    max_client_uploads: int = 8           # the same from one client address
    max_header_bytes: int = 32 * 2**10    # a request's line and headers; past it 431 (gates.http_options)

    def __post_init__(self):
        for item in fields(self):
            value = getattr(self, item.name)
            if not _is_int(value) or value < 1:
                raise SettingError(item.name, f"must be a whole number, at least 1, not {value!r}")


@dataclass(frozen=True)
class ServeSettings:
    """The model, how it answers, what a request may send, and who does the work.

    ``processes``: recognise images in ``workers`` worker processes, each with its own engine (what ``digitlab serve``
    runs: one process's threads share one GIL), or, when False, in threads of the server process sharing one engine,
    as many at once as there are CPUs (tests, ``uvicorn --factory``). ``threads`` are the CPU threads inside one model
    call: onnxruntime's session threads, and PyTorch's in a worker process (PyTorch's count is process-wide, so the
    threaded server leaves its host process's own). ``worker_nice`` is added to the worker processes' niceness.
    """

    model: str | None = None              # a .safetensors checkpoint or a .onnx file; None: the bundled model
    backend: str | None = None            # "torch" or "onnx"; None: backends.backend_for the model file
    threshold: float | None = None  # below this confidence "unsure" (None: the model's default); per request too
    limits: Limits = field(default_factory=Limits)
    processes: bool = False
    workers: int | None = None            # worker processes; None: one per CPU
    threads: int = 1
    worker_nice: int = WORKER_NICE
    allowed_hosts: tuple[str, ...] | None = None  # Host header names answered; None: any (see LOOPBACK_HOSTS)
    api_key: str | None = None            # when set, /api/* (but /api/health) needs it: X-API-Key or Bearer
    rate_per_minute: int | None = None    # requests per minute one client address may make to /api/*; None: no cap
    cors_origins: tuple[str, ...] = ()    # other sites whose pages may call the API from a browser
    collect: str | None = None            # a folder: POST /api/samples saves corrected drawings there; None: off
    log_format: str = "text"              # one of LOG_FORMATS, in the server and its worker processes alike

    def __post_init__(self):
        model = None if self.model is None else os.fspath(self.model)
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "collect", None if self.collect is None else os.fspath(self.collect))
        if self.backend is None:
            object.__setattr__(self, "backend", backend_for(model))
        for name in ("allowed_hosts", "cors_origins"):  # as JSON carries them to a worker
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        self._check()

    def _check(self) -> None:
        if self.backend not in BACKENDS:
            raise SettingError("backend", f"must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.model is not None and not Path(self.model).is_file():  # one line now, not a failed start-up later
            raise SettingError("model", f"{self.model}: no such file")
        # Whether an export beside a checkpoint is its own is checked where it is loaded (engine.load_engine).
        if self.backend == "onnx" and self.model is not None and Path(self.model).suffix == ".safetensors" \
                and not Path(self.model).with_suffix(".onnx").is_file():
            raise SettingError("model", f"{self.model}: the onnx backend runs .onnx files; make one with "
                                        f"`digitlab export {self.model} --onnx "
                                        f"{Path(self.model).with_suffix('.onnx')}`")
        if self.backend == "onnx" and self.model is None and not BUNDLED_ONNX.is_file():
            raise SettingError("model", "is needed: this install has no bundled ONNX model (make a .onnx file with "
                                        "`digitlab export`)")
        if self.threshold is not None:
            try:
                object.__setattr__(self, "threshold", check_threshold(self.threshold))  # a float, as JSON carries it
            except ValueError as exc:  # its words, with the field's name left for the command line to put its own
                raise SettingError("threshold", str(exc).removeprefix("threshold ")) from None
        if not isinstance(self.limits, Limits):
            raise SettingError("limits", f"must be a Limits, not {type(self.limits).__name__}")
        if not isinstance(self.processes, bool):
            raise SettingError("processes", f"must be True or False, not {self.processes!r}")
        if self.workers is not None and (not _is_int(self.workers) or self.workers < 1):
            raise SettingError("workers", f"must be at least 1, not {self.workers!r}")
        if not _is_int(self.threads) or self.threads < 1:
            raise SettingError("threads", f"must be at least 1, not {self.threads!r}")
        if self.allowed_hosts is not None and (isinstance(self.allowed_hosts, str) or not all(
                isinstance(host, str) and host for host in self.allowed_hosts)):
            raise SettingError("allowed_hosts", f"must be a list of host names, not {self.allowed_hosts!r}")
        if self.api_key is not None and (not isinstance(self.api_key, str) or len(self.api_key) < 16
                                         or not self.api_key.isprintable() or " " in self.api_key):
            raise SettingError("api_key", "must be at least 16 printable characters without spaces (e.g. from "
                                          "`python -c 'import secrets; print(secrets.token_urlsafe())'`)")
        if self.rate_per_minute is not None and (not _is_int(self.rate_per_minute) or self.rate_per_minute < 1):
            raise SettingError("rate_per_minute", f"must be at least 1, not {self.rate_per_minute!r}")
        if isinstance(self.cors_origins, str) or not all(
                isinstance(o, str) and o.startswith(("http://", "https://")) and o.count("/") == 2
                for o in self.cors_origins):
            raise SettingError("cors_origins", f"must be origins like https://example.org (scheme and host, no "
                                               f"path), not {self.cors_origins!r}")
        if self.collect is not None and (not self.collect or Path(self.collect).exists()
                                         and not Path(self.collect).is_dir()):
            raise SettingError("collect", f"{self.collect!r} is not a folder")
        if self.log_format not in LOG_FORMATS:
            raise SettingError("log_format", f"must be one of {', '.join(LOG_FORMATS)}, not {self.log_format!r}")
        if not _is_int(self.worker_nice) or not 0 <= self.worker_nice <= 19:
            raise SettingError("worker_nice", f"must be between 0 and 19, not {self.worker_nice!r}")

    @property
    def worker_count(self) -> int:
        """How many worker processes run: ``workers``, else one per CPU."""
        return self.workers or os.cpu_count() or 1

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> ServeSettings:
        """The settings ``to_json`` wrote, checked again; anything else is a ValueError."""
        try:
            values: Any = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"serve settings: not JSON ({exc})") from None
        known = {item.name for item in fields(cls)}
        if not isinstance(values, dict) or not set(values) <= known:
            unknown = sorted(set(values) - known) if isinstance(values, dict) else type(values).__name__
            raise ValueError(f"serve settings: expected an object with the fields of ServeSettings, got {unknown}")
        if isinstance(values.get("limits"), dict):
            try:
                values["limits"] = Limits(**values["limits"])
            except TypeError as exc:
                raise ValueError(f"serve settings: limits: {exc}") from None
        return cls(**values)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
