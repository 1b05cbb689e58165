"""What the handlers take from a request, as FastAPI dependencies: the server's settings, the query's options, and
the image (or images) it sent. Each takes the ``Request`` alone, so none adds a parameter to the schema; a bad value
is an ``ApiError`` that says what is wrong with it. All are ``async``: FastAPI runs a plain function dependency in a
worker thread, a hop that costs more than the check itself.

The query parameters are read here rather than declared in the handlers' signatures: FastAPI's per-request
validation of declared parameters was a large share of the HTTP process's CPU under load (measured:
docs/serving.md, 'Where a request's CPU goes'). The handlers document them in the OpenAPI schema all the same.
"""

from __future__ import annotations

from typing import Annotated, NamedTuple

from fastapi import Depends, Request
from starlette.datastructures import UploadFile

from digitlab.recognition.facts import POLARITIES, check_threshold
from digitlab.serve.gates import ApiError
from digitlab.serve.settings import ServeSettings

TRUE, FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


async def settings(request: Request) -> ServeSettings:
    """The settings the app was made with (``create_app``)."""
    return request.app.state.settings


Settings = Annotated[ServeSettings, Depends(settings)]


def flag(request: Request, name: str) -> bool:
    """A true-or-false query parameter (false when absent), or a 422."""
    value = request.query_params.get(name, "false").lower()
    if value not in TRUE | FALSE:
        raise ApiError(422, f"{name} must be true or false, not {value!r}")
    return value in TRUE


class Options(NamedTuple):
    polarity: str
    threshold: float | None  # None: the server's
    multi: bool


async def options(request: Request) -> Options:
    """The request's ``polarity``, ``threshold`` and ``multi``, or a 422 that says what is wrong with them."""
    query = request.query_params
    multi = flag(request, "multi")
    polarity = query.get("polarity", "auto")
    if polarity not in POLARITIES:
        raise ApiError(422, f"polarity must be one of {', '.join(POLARITIES)}, not {polarity!r}")
    threshold = query.get("threshold")
    if threshold is not None:
        try:
            threshold = check_threshold(float(threshold))
        except ValueError:  # not a number, or not one from 0 to 1: said of the text that was sent
            raise ApiError(422, f"threshold must be a number from 0 to 1, not {threshold!r}") from None
    return Options(polarity, threshold, multi)


async def steps(request: Request) -> bool:
    """``steps``: also answer how the image was read."""
    return flag(request, "steps")


async def one_image(request: Request) -> tuple[str, bytes]:
    """The image of a request: its body, or the multipart field ``file``; and its name."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        upload = (await form_files(request, "file"))[0]
        return upload.filename or "upload", await upload.read()
    return "body", await request.body()


async def some_images(request: Request) -> list[tuple[str, bytes]]:
    """The images of a batch request, in the multipart field ``files``, each with its name."""
    files = await form_files(request, "files")
    return [(upload.filename or f"file {i}", await upload.read()) for i, upload in enumerate(files)]


async def form_files(request: Request, field: str) -> list[UploadFile]:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(415, f"send the images as multipart/form-data in the field '{field}'")
    limits = request.app.state.settings.limits
    form = await request.form(max_files=limits.max_batch_files, max_fields=limits.max_batch_files)
    files = [item for item in form.getlist(field) if isinstance(item, UploadFile)]
    if not files:
        fields = ", ".join(repr(name) for name in form.keys()) or "none"
        raise ApiError(422, f"no file in the form field '{field}' (fields sent: {fields})")
    return files


QueryOptions = Annotated[Options, Depends(options)]
Steps = Annotated[bool, Depends(steps)]
OneImage = Annotated[tuple[str, bytes], Depends(one_image)]
SomeImages = Annotated[list[tuple[str, bytes]], Depends(some_images)]
