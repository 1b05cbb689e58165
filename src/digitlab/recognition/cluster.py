"""Recognise images on a Ray cluster with Ray Data: ``digitlab predict --ray [ADDRESS] --out DIR``, or from Python
for whoever already holds a ``ray.data.Dataset`` (``pip install 'digitlab[cluster]'``).

Ray reads the files (local paths and folders, or any filesystem pyarrow reads: ``s3://``, ``gs://``...), and
``map_batches`` hands them, a batch at a time, to ``RecognizeBatch`` actors: each loads the ONNX model once, on
onnxruntime (no PyTorch on the cluster), and answers every image with one row of ``formats.COLUMNS``, the same
record ``digitlab predict --out`` writes. An image that cannot be read is a row with its ``error`` set, never a
failed job. Measured against ``--jobs``: docs/scale.md.

    import ray
    from digitlab.recognition.cluster import read_images, recognise_dataset

    ray.init()                                               # or ray.init("ray://head:10001")
    answers = recognise_dataset(read_images(["s3://bucket/scans/"]))
    answers.write_parquet("s3://bucket/answers/")

    recognise_dataset(my_dataset, column="image_bytes", path_column="key")   # a dataset of your own
"""

from __future__ import annotations

from typing import Any

import numpy as np

from digitlab.recognition.facts import SUFFIXES
from digitlab.recognition.formats import COLUMNS, arrow_schema, record

IMAGE_EXTENSIONS = [suffix.removeprefix(".") for suffix in SUFFIXES]  # as Ray's file_extensions takes them


class RecognizeBatch:
    """A ``map_batches`` callable class: the model is loaded once per actor, in ``__init__``; each call answers a
    batch of image bytes (and their names) with one row per image."""

    def __init__(self, model: str | None = None, threshold: float | None = None, polarity: str = "auto",
                 multi: bool = False, column: str = "bytes", path_column: str | None = "path"):
        from digitlab.recognition.parallel import WorkerSettings, load_single_threaded

        if model is not None and not str(model).lower().endswith(".onnx"):
            raise ValueError(f"{model}: a cluster runs .onnx models (no PyTorch there); make one with "
                             f"`digitlab export {model} --onnx model.onnx`")
        self.recognizer = load_single_threaded(WorkerSettings(model, "onnx", threshold, polarity, multi=multi))
        self.multi, self.column, self.path_column = multi, column, path_column

    def __call__(self, batch: dict[str, np.ndarray]):
        data = batch[self.column]
        names = batch[self.path_column] if self.path_column else [f"<bytes #{i}>" for i in range(len(data))]
        items = [(str(name), _as_bytes(item)) for name, item in zip(names, data)]
        rows = [record(prediction) for prediction in self.recognizer.predict(items, multi=self.multi)]
        import pyarrow as pa

        return pa.Table.from_pylist(rows, schema=arrow_schema())


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim == 1:
        return item.tobytes()  # a binary column that reached numpy as an array of bytes
    raise ValueError(f"the image column holds {type(item).__name__}, not the bytes of an image file")


def read_images(paths: list[str] | str, **read_options):
    """A dataset of ``bytes`` and ``path`` rows for the image files in ``paths`` (files, folders with everything
    below them, or URIs of any filesystem pyarrow reads). Reading asks for a fraction of a CPU: it mostly waits on
    storage, and the recognising actors hold the whole CPUs."""
    import ray.data

    read_options.setdefault("num_cpus", 0.1)
    return ray.data.read_binary_files(paths, include_paths=True, file_extensions=IMAGE_EXTENSIONS, **read_options)


def recognise_dataset(dataset, model: str | None = None, threshold: float | None = None, polarity: str = "auto",
                      multi: bool = False, column: str = "bytes", path_column: str | None = "path",
                      actors: int | None = None, batch_size: int = 64):
    """``dataset``'s images recognised by up to ``actors`` RecognizeBatch actors (None: one per CPU of the cluster,
    less what reading holds), one CPU each: a dataset of ``formats.COLUMNS`` rows, lazily, as Ray Data datasets
    are. The pool starts with one actor and grows while there are CPUs and work, so reading always has room."""
    import ray

    if actors is None:
        actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
    pool = ray.data.ActorPoolStrategy(min_size=1, max_size=actors)
    return dataset.map_batches(RecognizeBatch, batch_size=batch_size, batch_format="numpy", num_cpus=1,
                               compute=pool, fn_constructor_kwargs=dict(
                                   model=model, threshold=threshold, polarity=polarity, multi=multi, column=column,
                                   path_column=path_column))


__all__ = ["COLUMNS", "RecognizeBatch", "read_images", "recognise_dataset"]
