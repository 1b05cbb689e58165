"""Worker processes for ``digitlab serve``: every CPU decodes and recognises images, none waits for another's GIL.

Decoding, preprocessing and recognising an image are most of a request's CPU, and much of that is Python holding
the GIL between small numpy and OpenCV calls: threads in one process take turns more than they run side by side.
So the server (one process: HTTP, limits, JSON) hands each request's images to one of N worker processes, each with
its own model, and waits for the answer without blocking its event loop. A worker runs ``serve.runner``, which
imports no FastAPI; this module imports no FastAPI either, and never ``serve.app``. Nor does the server's side of it
import ``serve.runner``: only the workers read images, so only they load numpy, OpenCV and Pillow.

    python -m digitlab.serve.workers          # as WorkerPool starts one; the settings come first on stdin

A worker speaks over its stdin and stdout, one message at a time, in JSON (no pickle: the server and its workers
trust each other no further than JSON lets them); lengths are 4-byte big-endian:

    settings   server -> worker   header length, total length, ``ServeSettings.to_json()``   once, first
    start-up   worker -> server   length, {"metadata": {...}}             once, when the model is loaded
    request    server -> worker   header length, total length, {"polarity", "threshold", "multi", "steps", "names",
                                  "sizes"}, then the images' bytes one after another
    answer     worker -> server   length, {"answers": [...]} as ``runner.recognise`` gives them, or {"error": "..."}
    sample     server -> worker   as a request, with {"save": {"label", "answer", "model", "source"}, "names",
                                  "sizes"} and one image
    saved      worker -> server   length, {"saved": ...} as ``runner.save_sample`` gives it, or {"error": "..."}

Requests wait for a free worker in the order they came (a FIFO of idle workers), so one slow image delays only the
requests queued behind it. A worker that dies (killed, out of memory) fails only the request it held, with a 500,
and is replaced. A model a worker cannot load ends it with one line on stderr and exit code 2, which fails the
server's start when it is the first worker's (``WorkerPool.start``); a later worker that fails is replaced.

Workers run at a lower scheduling priority than the server (``ServeSettings.worker_nice``): when every CPU is busy
the server still gets one at once to read a request, hand it on and send an answer, instead of queueing behind
image work (measured: docs/serving.md, 'Worker priority'; processes against threads: 'Where a request's CPU goes').
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import struct
import sys
from typing import Any, BinaryIO, Sequence

from digitlab.errors import CheckpointError, DataError, one_line
from digitlab.serve.settings import ServeSettings
from digitlab.threads import yield_when_waiting

log = logging.getLogger("digitlab.serve")
LENGTH = struct.Struct(">I")
REQUEST_HEAD = struct.Struct(">II")  # the header's length, the whole request's length


class WorkerError(RuntimeError):
    """A worker died or answered nonsense; the request gets a 500 and the worker is replaced."""


class Busy(WorkerError):
    """Too many requests wait, or one took longer than its budget: a 503, to be tried again after ``retry_after``
    seconds. A worker past its budget is killed and replaced: nothing else stops image work in its process."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


# --- the server's side --------------------------------------------------------------------------------------------

class Worker:
    """One worker process and the pipes to it."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process

    async def send(self, head: bytes, payload: Sequence[bytes] = ()) -> None:
        """One message: ``head`` (JSON), then ``payload``'s bytes."""
        size = len(head) + sum(len(p) for p in payload)
        self.process.stdin.writelines([REQUEST_HEAD.pack(len(head), size), head, *payload])
        await self.process.stdin.drain()

    async def receive(self) -> dict[str, Any]:
        stdout = self.process.stdout
        (size,) = LENGTH.unpack(await stdout.readexactly(LENGTH.size))
        return json.loads(await stdout.readexactly(size))


class WorkerPool:
    """``settings.worker_count`` worker processes, each running ``settings``' model; ``recognise`` runs a request on
    the next free one."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.command = [sys.executable, "-m", "digitlab.serve.workers"]
        self.idle: asyncio.Queue[Worker | None] = asyncio.Queue()   # None: no worker is left
        self.workers: list[Worker] = []
        self.metadata: dict[str, Any] = {}
        self.joining: set[asyncio.Task] = set()  # workers starting after the first, or replacing one; held here,
                                                  # as the loop keeps only weak references to tasks
        self.waiting = 0  # requests waiting for an idle worker
        self.restarts = 0  # workers replaced after dying or overrunning (served at /metrics)

    async def start(self) -> None:
        """Start the first worker and wait until it has its model loaded (a model that fails to load fails here), then
        start the others, each ready for requests once it has loaded its own.

        The first worker doubles as the check of the model (``engine.check_model``): one that cannot be loaded is said
        once, by that worker, before any other starts. The server answers with it meanwhile, and the others start
        only then, so that on a machine with few CPUs they do not take them from the server's start and the first
        worker's, the two the first answer waits for (measured: docs/serving.md, 'Start-up'). A later worker that
        fails to load is replaced, as one that dies is."""
        try:
            first = await self._spawn()
            self.workers.append(first)
            await self._load(first)
        except BaseException:
            await self.close()
            raise
        self.idle.put_nowait(first)
        for _ in range(self.settings.worker_count - 1):
            self._in_background(self._join())

    async def _join(self) -> None:
        """Start a worker; once its model is loaded it waits for requests with the others."""
        worker = await self._spawn()
        self.workers.append(worker)
        try:
            await self._load(worker)
        except WorkerError:
            log.error("worker process %d could not load the model (exit code %s); starting another",
                      worker.process.pid, worker.process.returncode)
            await self._replace(worker)
            return
        self.idle.put_nowait(worker)

    def _in_background(self, work) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.joining.add(task)
        task.add_done_callback(self.joining.discard)

    async def _start_one(self) -> Worker:
        """A worker with its model loaded."""
        worker = await self._spawn()
        try:
            return await self._load(worker)
        except BaseException:
            await _stop(worker)
            raise

    async def _spawn(self) -> Worker:
        """A worker process, importing what it needs until its settings come."""
        environment = dict(os.environ)
        yield_when_waiting(environment)  # in the worker's environment from its first instruction, before torch
        # numpy's OpenBLAS starts a thread per CPU when it is imported, each spinning a while in wait for work: CPU
        # taken from the server and the other workers as they all start, for products a worker never splits (the
        # workers already run side by side, as for OpenCV in _set_process_wide)
        environment.setdefault("OPENBLAS_NUM_THREADS", "1")
        process = await asyncio.create_subprocess_exec(*self.command, stdin=asyncio.subprocess.PIPE,
                                                       stdout=asyncio.subprocess.PIPE, limit=2**20, env=environment)
        return Worker(process)

    async def _load(self, worker: Worker) -> Worker:
        """Send ``worker`` the settings and wait until its model is loaded."""
        try:
            await worker.send(self.settings.to_json().encode())
            hello = await worker.receive()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            await worker.process.wait()
            raise WorkerError(f"a worker process failed to start (exit code {worker.process.returncode}); see its "
                              f"error above") from None
        self.metadata = hello["metadata"]
        return worker

    async def recognise(self, polarity: str, threshold: float | None, items: list[tuple[str, bytes]],
                        multi: bool, steps: bool = False) -> list[dict[str, Any]]:
        """``runner.recognise`` in a worker process: one answer per item, in order."""
        head = {"polarity": polarity, "threshold": threshold, "multi": multi, "steps": steps,
                "names": [name for name, _ in items], "sizes": [len(data) for _, data in items]}
        return (await self._run(head, [data for _, data in items]))["answers"]

    async def save_sample(self, label: str, data: bytes, answer: str | None, model: dict[str, Any],
                          source: str) -> dict[str, Any]:
        """``runner.save_sample`` in a worker process, waiting its turn as a request does."""
        head = {"save": {"label": label, "answer": answer, "model": model, "source": source},
                "names": [source], "sizes": [len(data)]}
        return (await self._run(head, [data]))["saved"]

    async def _run(self, head: dict[str, Any], payload: list[bytes]) -> dict[str, Any]:
        """Send ``head`` and ``payload`` to the next idle worker and return its reply, within the limits on waiting
        requests and on a request's time."""
        limits = self.settings.limits
        if self.waiting >= limits.max_waiting:
            raise Busy(f"the server is busy: {self.waiting} requests are waiting; try again shortly", retry_after=1)
        self.waiting += 1
        try:
            worker = await self.idle.get()
        finally:
            self.waiting -= 1
        if worker is None:
            self.idle.put_nowait(None)  # for the next request too
            raise WorkerError("no worker process is left (see the log for why they could not be restarted)")
        try:
            await worker.send(json.dumps(head).encode(), payload)
            reply = await asyncio.wait_for(worker.receive(), limits.max_seconds)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.CancelledError,
                asyncio.TimeoutError) as exc:
            # dead, or the client left mid-request: the pipe's state is unknown either way, so it is not reused
            self._in_background(self._replace(worker))
            if isinstance(exc, asyncio.CancelledError):
                raise
            if isinstance(exc, asyncio.TimeoutError):
                raise Busy(f"the images took longer than {limits.max_seconds} s to read; send smaller or fewer "
                           f"images", retry_after=limits.max_seconds) from None
            raise WorkerError(f"worker process {worker.process.pid} died "
                              f"(exit code {worker.process.returncode})") from None
        self.idle.put_nowait(worker)
        if "error" in reply:
            raise WorkerError(reply["error"])
        return reply

    async def _replace(self, worker: Worker) -> None:
        self.restarts += 1
        await _stop(worker)
        if worker not in self.workers:  # the pool was closed meanwhile
            return
        self.workers.remove(worker)
        try:
            fresh = await self._start_one()
        except WorkerError:
            log.exception("could not replace a worker process; %d left", len(self.workers))
            if not self.workers:
                self.idle.put_nowait(None)  # fail the waiting requests instead of leaving them waiting forever
            return
        self.workers.append(fresh)
        self.idle.put_nowait(fresh)

    async def close(self) -> None:
        """Stop every worker, those still loading or being replaced included."""
        for task in self.joining:
            task.cancel()
        await asyncio.gather(*self.joining, return_exceptions=True)
        await asyncio.gather(*(_stop(worker) for worker in self.workers))
        self.workers.clear()


async def _stop(worker: Worker) -> None:
    """End of input tells a worker to exit; one that does not within 5 s is killed."""
    if worker.process.stdin and not worker.process.stdin.is_closing():
        worker.process.stdin.close()
    try:
        await asyncio.wait_for(worker.process.wait(), 5)
    except asyncio.TimeoutError:
        worker.process.kill()
        await worker.process.wait()


# --- the worker's side --------------------------------------------------------------------------------------------

def main() -> None:
    """Read the settings, take the process-wide settings this process owns, load the model, say so, then answer
    requests from stdin until it closes."""
    yield_when_waiting()  # started by hand rather than by a WorkerPool: still before the engine imports torch
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the server ends us by EOF
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(name)s: %(message)s")
    from digitlab.serve import runner  # what reads images: imported while the server is busy with its own start

    # The protocol owns the real stdout; anything a library prints goes to stderr instead of corrupting it.
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    source = sys.stdin.buffer
    try:
        first = _read(source)
        if first is None:
            return
        settings = ServeSettings.from_json(first[0])
        log_as(settings.log_format)
        os.nice(settings.worker_nice)
        _set_process_wide(settings)
        recognizer = runner.load_recognizer(settings)
        _write(channel, {"metadata": recognizer.engine.metadata})
        serve_requests(recognizer, source, channel, settings)
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    except (CheckpointError, DataError, ValueError, OSError, ImportError) as exc:  # ImageError is a ValueError
        # a model file that cannot be loaded, or a backend not installed: one line, and the server reports the exit
        print(f"digitlab serve: worker process: error: {one_line(exc)}", file=sys.stderr)
        sys.exit(2)


def log_as(log_format: str) -> None:
    """Log in the server's format (``serve.observe.log_config``), warnings included (numpy's on an odd image), so a
    worker's lines on the shared stderr read as the server's do: one JSON object each with ``--log-format json``."""
    import logging.config

    from digitlab.serve.observe import log_config

    logging.config.dictConfig(log_config(log_format, "warning"))
    logging.captureWarnings(True)


def _set_process_wide(settings: ServeSettings) -> None:
    """Set what is process-wide, which this process alone decides: the worker processes already recognise images
    side by side, so OpenCV's pool splitting each image across threads too (and PyTorch's, beyond ``threads``)
    would only compete with them."""
    import cv2

    cv2.setNumThreads(1)
    if settings.backend == "torch":
        import torch

        torch.set_num_threads(settings.threads)


def serve_requests(recognizer, source: BinaryIO, channel: BinaryIO, settings: ServeSettings) -> None:
    """Answer requests from ``source`` on ``channel`` until ``source`` closes: recognise their images, or save a
    corrected drawing (a request with ``save``)."""
    from digitlab.serve import runner

    while (message := _read(source)) is not None:
        head, body = message
        request = json.loads(head)
        offsets = [len(head)]
        for item_size in request["sizes"]:
            offsets.append(offsets[-1] + item_size)
        items = [(name, body[start:end]) for name, start, end in zip(request["names"], offsets, offsets[1:])]
        try:
            if "save" in request:
                save = request["save"]
                reply = {"saved": runner.save_sample(settings, save["label"], items[0][1], save["answer"],
                                                     save["model"], save["source"])}
            else:
                reply = {"answers": runner.recognise(recognizer, items, request["multi"], request["polarity"],
                                                     request["threshold"], request.get("steps", False))}
        except Exception:  # the traceback stays in this process's log; the server answers 500
            log.exception("unhandled error in a worker process")
            reply = {"error": "internal error in a worker process"}
        _write(channel, reply)


def _read(source: BinaryIO) -> tuple[bytes, bytes] | None:
    """One message from the server: its JSON header and the whole body (header included); None at end of input."""
    head = source.read(REQUEST_HEAD.size)
    if len(head) < REQUEST_HEAD.size:
        return None
    header_size, size = REQUEST_HEAD.unpack(head)
    body = source.read(size)
    if len(body) < size:
        return None
    return body[:header_size], body


def _write(channel: BinaryIO, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    channel.write(LENGTH.pack(len(data)) + data)
    channel.flush()


if __name__ == "__main__":
    main()
