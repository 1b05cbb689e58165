"""What a worker runs for one request: images in, one JSON-ready answer per image out.

The server hands a request's images to ``recognise`` (and a corrected drawing to ``save_sample``), in a thread of
its own process or in a worker process (``serve.workers``); both run this module, which imports no FastAPI,
Starlette or anyio, so a worker process loads only what reading digits needs.

    recognizer = load_recognizer(ServeSettings(model="model.onnx"))
    recognise(recognizer, [("a.png", data)], multi=False)     # [{"name": "a.png", "digit": 7, ...}]
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from digitlab.recognition.decode import NOT_AN_IMAGE, TOO_LARGE, ImageError
from digitlab.recognition.engine import Engine, load_engine
from digitlab.recognition.predict import Prediction, Recognizer
from digitlab.serve import samples
from digitlab.serve.settings import ServeSettings

STATUS = {NOT_AN_IMAGE: 415, TOO_LARGE: 413}  # any other unreadable input: 422
EMPTY = "empty body: send an image file (PNG, JPEG, ...) as the request body or in the form field 'file'"


def load_engine_for(settings: ServeSettings) -> Engine:
    """The settings' model behind their backend. onnxruntime takes its thread count per session; PyTorch's is
    process-wide, set by the process that owns it (a worker process's ``main``)."""
    options = {"threads": settings.threads} if settings.backend == "onnx" else {}
    return load_engine(settings.model, settings.backend, **options)


def load_recognizer(settings: ServeSettings, engine: Engine | None = None) -> Recognizer:
    """A Recognizer with the settings' threshold and pixel limit, for ``engine`` or the settings' model."""
    engine = load_engine_for(settings) if engine is None else engine
    return Recognizer(engine, settings.threshold, max_pixels=settings.limits.max_pixels)


def recognise(recognizer: Recognizer, items: list[tuple[str, bytes]], multi: bool, polarity: str | None = None,
              threshold: float | None = None, steps: bool = False) -> list[dict[str, Any]]:
    """Run the items through the model in one call and answer each in order.

    ``polarity`` and ``threshold`` are the request's (None: the server's); with ``steps`` each answer also shows
    the preprocessing's images between its steps (``steps``). The images are opened once, by
    ``preprocess``, which refuses one with too many pixels from its header before decoding it; an item that cannot
    be read answers ``{"name", "error", "status"}`` with the HTTP status its reason calls for.
    """
    answers: list[dict[str, Any] | None] = [None] * len(items)
    readable = []
    for index, (name, data) in enumerate(items):
        if data:
            readable.append(index)
        else:
            answers[index] = {"name": name, "error": EMPTY, "status": 422}
    predictions = recognizer.predict([items[i] for i in readable], multi, polarity, threshold, steps)
    for index, prediction in zip(readable, predictions):
        answers[index] = ({"name": prediction.source, "error": prediction.error,
                           "status": STATUS.get(prediction.error_kind, 422)}
                          if prediction.error is not None else answer(prediction))
    return answers


def save_sample(settings: ServeSettings, label: str, data: bytes, answer: str | None, model: dict[str, Any],
                source: str) -> dict[str, Any]:
    """``samples.save_sample`` into the settings' ``collect`` folder under their pixel limit for samples: ``{"path"}``
    relative to that folder, or ``{"error", "status"}`` for an image that cannot be read, an empty one answered as
    ``recognise`` answers it (nothing is written then). It runs where images are recognised, under the same limits on
    time, waiting and memory, since keeping a sample decodes it whole."""
    if not data:
        return {"error": EMPTY, "status": 422}
    folder = Path(settings.collect)
    try:
        path = samples.save_sample(folder, label, data, answer, model,
                                   min(settings.limits.max_pixels, settings.limits.max_sample_pixels), source)
    except ImageError as exc:
        return {"error": str(exc), "status": STATUS.get(exc.kind, 422)}
    return {"path": path.relative_to(folder).as_posix()}


def answer(prediction: Prediction) -> dict[str, Any]:
    """The JSON for one readable image: ``Prediction.to_dict()`` plus what the model saw and the image's size."""
    body = prediction.to_dict()
    body["name"] = body.pop("path")
    body |= {"multi": prediction.multi, "polarity": prediction.polarity,
             "size": list(prediction.size) if prediction.size else None}
    if prediction.multi:
        for item, digit in zip(body["digits"], prediction.digits):
            item["image"] = png_data_url(digit.image)
    else:  # the same keys whether or not a digit was found
        body["image"] = png_data_url(prediction.digits[0].image) if prediction.digits else None
        body.setdefault("probabilities", None)
        body.setdefault("box", None)
    if prediction.steps is not None:
        body["steps"] = steps_answer(prediction.steps)
    return body


def steps_answer(steps: dict[str, Any]) -> dict[str, Any]:
    """preprocess's images between its steps as PNG data URLs; the centre of mass as numbers."""
    answer: dict[str, Any] = {name: png_data_url(steps[name]) for name in ("gray", "ink", "crop", "fit")
                              if name in steps}
    if "centre" in steps:
        answer["centre"] = {"mass": [round(float(v), 3) for v in steps["centre"]["mass"]],
                            "corner": [int(v) for v in steps["centre"]["corner"]]}
    return answer


def png_data_url(image: np.ndarray) -> str:
    """(H, W) float image in [0, 1] -> a data: URL of its 8-bit PNG."""
    pixels = (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    # OpenCV's encoder: the same lossless PNG as Pillow's, with less Python per answer
    ok, data = cv2.imencode(".png", pixels)
    assert ok, "OpenCV failed to encode a 28x28 uint8 image"
    return "data:image/png;base64," + base64.b64encode(data.tobytes()).decode("ascii")
