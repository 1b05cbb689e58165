"""POST /api/samples: teach the model, on a server started with ``--collect DIR``. The query is checked here; the
image is decoded and saved (``serve.runner.save_sample``) where images are recognised, waiting its turn and held to a
request's time."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from digitlab.labels import CLASS_FOLDERS, check_class_folder
from digitlab.serve import schemas
from digitlab.serve.gates import ApiError
from digitlab.serve.routes.deps import OneImage, Settings
from digitlab.serve.routes.predict import IMAGE_BODY

MAX_ANSWER = 40  # characters of the answer the model gave, kept in the sidecar
SAMPLE_BODY = {"parameters": [
    {"name": "label", "in": "query", "required": True,
     "schema": {"type": "string", "enum": list(CLASS_FOLDERS)}, "description": "the right answer"},
    {"name": "answer", "in": "query", "required": False, "schema": {"type": "string", "maxLength": MAX_ANSWER},
     "description": "what the model answered, kept in the sidecar"},
], "requestBody": IMAGE_BODY["requestBody"]}
COLLECTING_OFF = {404: {"description": "collecting is off (the server was not started with --collect DIR)",
                        "model": schemas.ErrorAnswer}}


async def collecting(settings: Settings) -> None:
    """A 404 when the server keeps no corrected drawings, before anything of the request is read."""
    if settings.collect is None:
        raise ApiError(404, "collecting is off: start the server with --collect DIR to save corrected drawings")


async def label_and_answer(request: Request) -> tuple[str, str | None]:
    """The query's ``label`` (a class folder) and ``answer`` (what the model said), or a 422."""
    label, answer = request.query_params.get("label", ""), request.query_params.get("answer")
    try:
        check_class_folder(label)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    if answer is not None and (len(answer) > MAX_ANSWER or not answer.isprintable()):
        raise ApiError(422, f"answer must be at most {MAX_ANSWER} printable characters")
    return label, answer


router = APIRouter()


@router.post("/api/samples", openapi_extra=SAMPLE_BODY, response_model=schemas.SampleAnswer,
             responses={**COLLECTING_OFF, **schemas.ERRORS}, dependencies=[Depends(collecting)])
async def add_sample(request: Request, settings: Settings,
                     query: Annotated[tuple[str, str | None], Depends(label_and_answer)],
                     image: OneImage) -> dict[str, str]:
    """Teach the model: save an image it read wrong with the right ``label``, as ``DIR/<label>/NAME.png`` and
    its sidecar ``NAME.json`` (time, model, the answer it gave), for fine-tuning. Only on a server started with
    ``--collect DIR``."""
    (label, answer), (name, data) = query, image
    model = {"arch": request.app.state.metadata.get("arch"), "backend": settings.backend,
             "file": Path(settings.model).name if settings.model else "bundled"}
    saved = await request.app.state.save_sample(label, data, answer, model, name)
    if "error" in saved:
        raise ApiError(saved["status"], saved["error"])
    return {"label": label, "path": saved["path"]}
