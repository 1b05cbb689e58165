"""GET /api/health, /api/model and /metrics: about the server and the model it serves."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from digitlab.recognition.facts import default_threshold
from digitlab.serve import schemas
from digitlab.serve.routes.deps import Settings

PUBLIC_METADATA = ("format", "arch", "arch_kwargs", "classes", "normalisation", "input", "config", "epoch",
                   "metrics", "test", "test_tta", "calibration")


def public_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """What ``/api/model`` tells anyone who asks: the network, its classes and normalisation, how it scored and its
    training settings, but not the command line, paths or package versions of the machine it was trained on."""
    public = {key: metadata[key] for key in PUBLIC_METADATA if key in metadata}
    if isinstance(public.get("config"), dict):
        public["config"] = {k: v for k, v in public["config"].items() if k != "data_dir"}
    return public


router = APIRouter()


@router.get("/api/health", response_model=schemas.HealthAnswer)
async def health(request: Request, settings: Settings) -> dict[str, Any]:
    metadata = getattr(request.app.state, "metadata", None)
    return {"status": "ok" if metadata is not None else "loading", "backend": settings.backend,
            "model": metadata.get("arch") if metadata is not None else None}


@router.get("/api/model", response_model=schemas.ModelAnswer,
            responses={401: schemas.ERRORS[401], 429: schemas.ERRORS[429]})
async def model(request: Request, settings: Settings) -> dict[str, Any]:
    """The model's public metadata (network, classes, normalisation, training settings, scores, calibration)
    and how it is served."""
    metadata = request.app.state.metadata
    served = default_threshold(metadata) if settings.threshold is None else settings.threshold
    return {"backend": settings.backend, "threshold": served, "metadata": public_metadata(metadata),
            "limits": asdict(settings.limits), "collecting": settings.collect is not None}


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text format (serve.observe); under the API key when the server has one."""
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
