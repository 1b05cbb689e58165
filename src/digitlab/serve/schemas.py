"""What the REST API answers, as pydantic models: the source of ``/openapi.json``'s response schemas.

The handlers build their answers as plain dicts (``serve.runner``) and send them without a second pass through
pydantic, which would cost CPU on every request; these models say what those dicts hold, for the published schema,
for generated clients, and for the tests that check real answers against that schema.

    PredictAnswer     POST /api/predict: one digit, or (``multi``) a number with a box per digit
    BatchAnswer       POST /api/predict/batch: one PredictAnswer or ImageFailure per file, in order
    SampleAnswer      POST /api/samples: where a corrected drawing was saved
    HealthAnswer, ModelAnswer, ErrorAnswer
    ERRORS            the refusals, by status, that the routes document
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Box = Annotated[list[int], Field(min_length=4, max_length=4,
                                 description="x, y, width, height in pixels of the upright original image")]
Size = Annotated[list[int], Field(min_length=2, max_length=2, description="width, height of the upright image")]
DataUrl = Annotated[str, Field(pattern=r"^data:image/png;base64,",
                               description="the 28x28 image the model received, as a PNG data: URL")]


class ErrorAnswer(BaseModel):
    """Every refusal: 4xx and 5xx answers carry one line saying why."""

    detail: str = Field(description="why the request was refused, in one line")


ERRORS = {status: {"description": description, "model": ErrorAnswer} for status, description in {
    400: "a malformed request: invalid multipart data, too many files, a bad Content-Length",
    401: "an API key is needed (a server started with --api-key)",
    403: "a cross-origin request from a browser",
    408: "the request body stopped arriving",
    413: "body or image too large", 415: "not an image",
    422: "empty, truncated or corrupt image, a missing form field, or a bad query parameter",
    429: "too many requests or uploads at once from one address; see Retry-After",
    431: "request headers too large",
    503: "busy: too many requests waiting, or the images took too long; see Retry-After"}.items()}


class Ranked(BaseModel):
    digit: int = Field(ge=0, le=9)
    probability: Probability


class DigitAnswer(BaseModel):
    """One digit of a number (``multi=true``)."""

    digit: int | None = Field(ge=0, le=9, description="null when the model is not sure enough; reason says why")
    confidence: Probability = Field(description="the probability of the most likely digit, accepted or not")
    top3: list[Ranked] = Field(description="the three most likely digits, most likely first")
    probabilities: list[Probability] = Field(min_length=10, max_length=10, description="one per digit, 0 to 9")
    not_a_digit: Probability | None = Field(description="the model's 'not a digit' output; null if it has none")
    box: Box
    reason: str | None
    image: DataUrl


class Steps(BaseModel):
    """How the image was read (``steps=true``): preprocess's images between its steps, for the first digit."""

    gray: str | None = Field(None, description="the image in gray at the working size, as its polarity was judged")
    ink: str | None = Field(None, description="the ink found: bright strokes on dark, background removed")
    crop: str | None = Field(None, description="the first digit's ink, cropped (strokes evened to MNIST's width)")
    fit: str | None = Field(None, description="the crop fitted into the 20x20 box, keeping its aspect")
    centre: dict[str, list[float]] | None = Field(
        None, description="mass: the fitted digit's centre of mass (x, y); corner: where its top-left corner was put "
                          "in 28x28 (left, top), so the centre of mass lies at the centre")


class Common(BaseModel):
    name: str = Field(description="the uploaded file's name ('body' for a raw request body)")
    reason: str | None = Field(description="why there is no answer: a blank page, noise, the model unsure...")
    polarity: str | None = Field(description="the polarity the image was read with (detected or asked for)")
    size: Size | None
    steps: Steps | None = Field(None, description="only with steps=true")


class DigitPrediction(Common):
    """One digit (``multi=false``). When no ink was found, everything but ``name``, ``reason`` and ``size`` is
    null (``top3`` empty)."""

    multi: Literal[False]
    digit: int | None = Field(ge=0, le=9, description="null when unsure, blank or not a digit; reason says why")
    confidence: Probability | None
    top3: list[Ranked]
    probabilities: list[Probability] | None = Field(min_length=10, max_length=10)
    not_a_digit: Probability | None = None
    box: Box | None
    image: DataUrl | None


class NumberPrediction(Common):
    """A number read left to right (``multi=true``)."""

    multi: Literal[True]
    number: str | None = Field(pattern=r"^[0-9]+$", description="the digits read, null if any of them is unsure")
    confidence: Probability | None = Field(description="the least sure digit's confidence")
    digits: list[DigitAnswer]


PredictAnswer = Union[DigitPrediction, NumberPrediction]  # told apart by ``multi``


class ImageFailure(BaseModel):
    """A file of a batch that could not be read, answered in its place."""

    name: str
    error: str = Field(description="why, in one line")
    status: Literal[413, 415, 422] = Field(description="the HTTP status the same image alone would get")


class BatchAnswer(BaseModel):
    results: list[Union[DigitPrediction, NumberPrediction, ImageFailure]] = Field(
        description="one per file, in the order sent")


class HealthAnswer(BaseModel):
    status: Literal["ok", "loading"]
    backend: str
    model: str | None = Field(description="the network's name")


class Normalisation(BaseModel):
    mean: float
    std: float


class Score(BaseModel):
    model_config = ConfigDict(extra="allow")
    accuracy: float
    loss: float | None = None
    errors: int | None = None
    refused: int | None = None
    count: int | None = None
    shifts: list[list[int]] | None = Field(None, description="the pixel shifts averaged over (test-time augmentation)")


class Calibration(BaseModel):
    model_config = ConfigDict(extra="allow")
    temperature: float = Field(description="the logits are divided by it before the softmax")
    fitted_on: str | None = None
    count: int | None = None
    ece_before: float | None = None
    ece_after: float | None = None
    nll_before: float | None = None
    nll_after: float | None = None


class ModelMetadata(BaseModel):
    """The checkpoint's public metadata (the training machine's paths, command and versions are left out)."""

    model_config = ConfigDict(extra="allow")
    format: str | None = None
    arch: str | None = Field(None, description="the network's registered name")
    arch_kwargs: dict[str, Any] | None = None
    classes: list[str] | None = Field(None, description="the name of each output, in order")
    normalisation: Normalisation | None = None
    input: dict[str, Any] | None = Field(None, description="the input's shape and form")
    config: dict[str, Any] | None = Field(None, description="the training settings (TrainConfig)")
    epoch: int | None = None
    metrics: dict[str, float] | None = Field(None, description="the last epoch's validation loss and accuracy")
    test: Score | None = Field(None, description="accuracy on the MNIST test set")
    test_tta: Score | None = Field(None, description="the same with test-time augmentation")
    calibration: Calibration | None = None


class Limits(BaseModel):
    max_upload_bytes: int
    max_batch_bytes: int
    max_batch_files: int
    max_pixels: int
    max_waiting: int
    max_seconds: int
    body_seconds: int
    max_body_seconds: int
    max_uploads: int
    max_client_uploads: int


class ModelAnswer(BaseModel):
    backend: str
    threshold: Probability = Field(description="the confidence below which an answer is 'unsure'")
    metadata: ModelMetadata
    limits: Limits
    collecting: bool = Field(description="whether POST /api/samples saves corrected drawings (serve --collect)")


class SampleAnswer(BaseModel):
    label: str = Field(description="the class folder the drawing was saved in: a digit, or not_a_digit")
    path: str = Field(description="the PNG's path inside the collection folder; its sidecar has the same name, .json")


def openapi_3_0(node: Any) -> Any:
    """Pydantic's JSON Schema (as OpenAPI 3.1 takes it) written the way OpenAPI 3.0 says the same things: a value that
    may be null is ``nullable``, and a constant is a one-value ``enum``. The packaged Swagger UI reads 3.0 only, and
    a 3.0 document with 3.1's ``{"type": "null"}`` in it would tell clients something else than the server means."""
    if isinstance(node, list):
        return [openapi_3_0(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: openapi_3_0(value) for key, value in node.items()}
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [option for option in options if option != {"type": "null"}]
            del node[key]
            if len(rest) > 1:
                node[key] = rest
            elif "$ref" in rest[0]:  # OpenAPI 3.0 ignores whatever stands beside a $ref
                node["allOf"] = rest
            else:
                node = {**rest[0], **node}
            node["nullable"] = True
    if "const" in node and not isinstance(node["const"], dict):
        node["enum"] = [node.pop("const")]
    return node
