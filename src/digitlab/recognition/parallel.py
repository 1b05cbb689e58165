"""Recognise many image files on every CPU: N worker processes, each with its own model, none waiting on another's
GIL (``digitlab predict --jobs N``).

Decoding and preprocessing are most of an image's CPU, and much of it is Python between small numpy and OpenCV
calls, so threads in one process take turns more than they run side by side; processes do not. The files are dealt
out in small chunks by path (each worker reads its own files), each worker loads the model once when it starts and
uses one thread, and the answers come back in input order, or as they are finished when ``ordered`` is False (a
slow file then holds up nothing behind it). Measured: docs/scale.md.

    for prediction in recognise_files(paths, jobs=4, model="model.onnx"):
        print(prediction.source, prediction.digit)

The parent imports neither onnxruntime nor PyTorch; a model a worker cannot load ends the job with that worker's
one-line error (a ValueError). Workers ignore Ctrl-C: the parent decides what happens, and stops them.
"""

from __future__ import annotations

import multiprocessing
import signal
from dataclasses import dataclass
from typing import Iterator, Sequence

from digitlab.recognition.predict import Prediction

CHUNK = 16  # files per task: enough to batch the model, few enough that Ctrl-C and the last worker wait little


@dataclass(frozen=True)
class WorkerSettings:
    """What each worker builds its Recognizer from (sent once, when it starts)."""

    model: str | None = None
    backend: str | None = None
    threshold: float | None = None
    polarity: str = "auto"
    batch_size: int = 256
    multi: bool = False


def load_single_threaded(settings: WorkerSettings):
    """A Recognizer that uses one CPU: one thread for preprocessing, for OpenCV and for the model. ``--jobs``
    runs one per CPU; ``--jobs 1`` runs one in its own process."""
    import cv2

    from digitlab.recognition.engine import load_engine
    from digitlab.recognition.predict import Recognizer

    cv2.setNumThreads(1)
    engine = load_engine(settings.model, settings.backend, threads=1)
    return Recognizer(engine, threshold=settings.threshold, polarity=settings.polarity,
                      batch_size=settings.batch_size, threads=1)


def recognise_files(paths: Sequence[str], jobs: int, settings: WorkerSettings = WorkerSettings(),
                    ordered: bool = True) -> Iterator[Prediction]:
    """Predictions for ``paths`` from ``jobs`` worker processes, in input order unless ``ordered`` is False.
    Closing the iterator early (or Ctrl-C while it runs) stops the workers."""
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, not {jobs}")
    chunks = [list(paths[i:i + CHUNK]) for i in range(0, len(paths), CHUNK)]
    if not chunks:
        return
    pool = _context().Pool(min(jobs, len(chunks)), initializer=_start_worker,
                                                     initargs=(settings,))
    finished = False
    try:
        answers = pool.imap(_recognise, chunks) if ordered else pool.imap_unordered(_recognise, chunks)
        for chunk in answers:
            yield from chunk
        finished = True
    finally:
        if finished:
            pool.close()
        else:
            pool.terminate()  # Ctrl-C, an error, or the caller stopped reading: nothing more is wanted
        pool.join()


def _context():
    """Worker processes forked from a server process that has imported what reading needs (numpy, OpenCV,
    onnxruntime) once, so each worker starts without importing it again; none is a copy of this process, with its
    threads and locks. Where there is no fork (Windows, macOS's default), each worker starts afresh."""
    import os

    method = os.environ.get("DIGITLAB_START_METHOD")  # for measuring one against the other (docs/scale.md)
    if method is None:
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(["digitlab.recognition.predict", "onnxruntime", "cv2"])
    return context


# --- in each worker process ---------------------------------------------------------------------------------------

_recognizer = None
_load_error: str | None = None
_multi = False


def _start_worker(settings: WorkerSettings) -> None:
    global _recognizer, _load_error, _multi
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _multi = settings.multi
    try:
        _recognizer = load_single_threaded(settings)
    except (ValueError, OSError) as exc:  # kept for the first task: an initializer that raises is restarted forever
        _load_error = str(exc)
    except Exception as exc:  # noqa: BLE001 - CheckpointError and the like: still one line in the parent
        _load_error = f"{type(exc).__name__}: {exc}"


def _recognise(paths: list[str]) -> list[Prediction]:
    if _load_error is not None:
        raise ValueError(_load_error)
    results = _recognizer.predict(paths, multi=_multi)
    for result in results:  # the 28x28 images are for --explain and the page; not worth sending back
        for digit in result.digits:
            digit.image = None
    return results
