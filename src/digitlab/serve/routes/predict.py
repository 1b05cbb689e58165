"""POST /api/predict and /api/predict/batch: images in, one answer per image out (``serve.runner`` makes them).

The answers are sent as the dicts ``serve.runner`` made (a JSONResponse is not validated again); ``response_model``
only publishes their schema, and the query parameters, read by ``deps.options``, are documented here by hand.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from digitlab.recognition.facts import POLARITIES
from digitlab.serve import schemas
from digitlab.serve.gates import ApiError
from digitlab.serve.routes.deps import OneImage, QueryOptions, Settings, SomeImages, Steps

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
# The body's media types name the common ones, for generated clients; an image in any of facts.IMAGE_FORMATS is read
# whatever its Content-Type says (tests/recognition/test_decode.py checks the schema names no other).
IMAGE_BODY = {"parameters": [*QUERY, STEPS], "requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
    **{kind: {"schema": {"type": "string", "format": "binary"}}
       for kind in ("image/png", "image/jpeg", "image/webp", "application/octet-stream")},
}}}
BATCH_BODY = {"parameters": QUERY, "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"}}}}}}}}

router = APIRouter()


@router.post("/api/predict", openapi_extra=IMAGE_BODY, responses=schemas.ERRORS, response_model=schemas.PredictAnswer)
async def predict(request: Request, options: QueryOptions, steps: Steps, image: OneImage) -> JSONResponse:
    """Recognise one image: ``digit``, ``confidence``, ``probabilities``, ``box`` and ``image`` (the 28x28
    input the model saw); with ``multi=true`` the ``number`` and per-digit ``digits`` with boxes. ``digit`` is
    null and ``reason`` says why when the model is unsure or the image is blank. With ``steps=true``, ``steps``
    shows how the image was read (the first digit's way through the preprocessing)."""
    polarity, threshold, multi = options
    result = (await request.app.state.recognise(polarity, threshold, [image], multi, steps))[0]
    if "error" in result and "status" in result:
        raise ApiError(result["status"], result["error"])
    return JSONResponse(result)  # already plain JSON types: no second pass through pydantic


@router.post("/api/predict/batch", openapi_extra=BATCH_BODY, responses=schemas.ERRORS,
             response_model=schemas.BatchAnswer)
async def predict_batch(request: Request, settings: Settings, options: QueryOptions,
                        items: SomeImages) -> JSONResponse:
    """Recognise several images in one model call: ``results`` in the order sent, an unreadable file answering
    ``error`` and ``status`` in its place while the others are read."""
    polarity, threshold, multi = options
    most = settings.limits.max_upload_bytes
    # each file is held to the one-image limit too; one over it answers 413 in its place, the others are read
    fits = [i for i, (_, data) in enumerate(items) if len(data) <= most]
    results: list[dict[str, Any]] = [
        {"name": name, "error": f"file too large: {len(data):,} bytes is over the limit of {most:,} for one image",
         "status": 413}
        for name, data in items]
    if fits:
        read = await request.app.state.recognise(polarity, threshold, [items[i] for i in fits], multi)
        for i, answer in zip(fits, read):
            results[i] = answer
    return JSONResponse({"results": results})
