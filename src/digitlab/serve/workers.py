"""Worker processes for ``digitlab serve``: every CPU decodes and recognises images, none waits for another's GIL.

Decoding, preprocessing and recognising an image are most of a request's CPU (~80% of it, measured under load),
and much of that is Python holding the GIL between small numpy and OpenCV calls: threads in one process take turns
more than they run side by side, and every hand-off of the GIL costs a context switch. So the server (one process:
HTTP, limits, JSON) hands each request's images to one of N worker processes, each with its own model, and waits
for the answer without blocking its event loop.

    python -m digitlab.serve.workers --backend onnx --threshold 0.7 --max-pixels N   # as WorkerPool starts one

A worker speaks over its stdin and stdout, one request at a time, in JSON (no pickle: the server and its workers
trust each other no further than JSON lets them); lengths are 4-byte big-endian:

    start-up   worker -> server   length, {"metadata": {...}}             once, when the model is loaded
    request    server -> worker   header length, total length, {"polarity", "threshold", "multi", "names",
                                  "sizes"}, then the images' bytes one after another
    answer     worker -> server   length, {"answers": [...]} as ``app.recognise`` gives them, or {"error": "..."}

Requests wait for a free worker in the order they came (a FIFO of idle workers), so one slow image delays only the
requests queued behind it. A worker that dies (killed, out of memory) fails only the request it held, with a 500,
and is replaced.

Workers run at a lower scheduling priority than the server (``WORKER_NICE``): when every CPU is busy the server
still gets one at once to read a request, hand it on and send an answer, instead of queueing behind image work.
Under load (benchmarks/load.py, A/B runs) that gave 3-9% more requests/s and an 8-20% lower 99th percentile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import struct
import sys
from typing import Any, Sequence

log = logging.getLogger("digitlab.serve")
LENGTH = struct.Struct(">I")
REQUEST_HEAD = struct.Struct(">II")  # the header's length, the whole request's length
WORKER_NICE = 10  # added to the workers' niceness (0: the server's priority); lowering it needs no privileges


class WorkerError(RuntimeError):
    """A worker died or answered nonsense; the request gets a 500 and the worker is replaced."""


# --- the server's side --------------------------------------------------------------------------------------------

class Worker:
    """One worker process and the pipes to it."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process

    async def send(self, header: dict[str, Any], payload: Sequence[bytes] = ()) -> None:
        head = json.dumps(header).encode()
        size = len(head) + sum(len(p) for p in payload)
        self.process.stdin.writelines([REQUEST_HEAD.pack(len(head), size), head, *payload])
        await self.process.stdin.drain()

    async def receive(self) -> dict[str, Any]:
        stdout = self.process.stdout
        (size,) = LENGTH.unpack(await stdout.readexactly(LENGTH.size))
        return json.loads(await stdout.readexactly(size))


class WorkerPool:
    """``processes`` workers running the model at ``model_path`` on ``backend``; ``recognise`` runs a request on the
    next free one."""

    def __init__(self, model_path, backend: str, processes: int, threshold: float, max_pixels: int,
                 engine_options: dict[str, Any] | None = None, nice: int | None = None):
        nice = WORKER_NICE if nice is None else nice
        self.command = [sys.executable, "-m", "digitlab.serve.workers", "--backend", backend,
                        "--threshold", repr(threshold), "--max-pixels", str(max_pixels), "--nice", str(nice)]
        if model_path is not None:
            self.command += ["--model", os.fspath(model_path)]
        if (engine_options or {}).get("threads"):  # onnxruntime's threads, or PyTorch's in a worker
            self.command += ["--threads", str(engine_options["threads"])]
        self.processes = processes
        self.idle: asyncio.Queue[Worker | None] = asyncio.Queue()   # None: no worker is left
        self.workers: list[Worker] = []
        self.metadata: dict[str, Any] = {}
        self.replacing: set[asyncio.Task] = set()  # held here: the loop keeps only weak references to tasks

    async def start(self) -> None:
        """Start every worker and wait until each has its model loaded (a model that fails to load fails here)."""
        started = await asyncio.gather(*(self._start_one() for _ in range(self.processes)), return_exceptions=True)
        failed = [s for s in started if isinstance(s, BaseException)]
        for worker in (s for s in started if isinstance(s, Worker)):
            self.workers.append(worker)
            self.idle.put_nowait(worker)
        if failed:
            await self.close()
            raise failed[0]

    async def _start_one(self) -> Worker:
        process = await asyncio.create_subprocess_exec(*self.command, stdin=asyncio.subprocess.PIPE,
                                                       stdout=asyncio.subprocess.PIPE, limit=2**20)
        worker = Worker(process)
        try:
            hello = await worker.receive()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            await process.wait()
            raise WorkerError(f"a worker process failed to start (exit code {process.returncode}); see its "
                              f"error above") from None
        self.metadata = hello["metadata"]
        return worker

    async def recognise(self, polarity: str, threshold: float | None, items: list[tuple[str, bytes]],
                        multi: bool) -> list[dict[str, Any]]:
        """``app.recognise`` in a worker process: one answer per item, in order."""
        worker = await self.idle.get()
        if worker is None:
            self.idle.put_nowait(None)  # for the next request too
            raise WorkerError("no worker process is left (see the log for why they could not be restarted)")
        try:
            await worker.send({"polarity": polarity, "threshold": threshold, "multi": multi,
                               "names": [name for name, _ in items], "sizes": [len(data) for _, data in items]},
                              [data for _, data in items])
            reply = await worker.receive()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.CancelledError) as exc:
            # dead, or the client left mid-request: the pipe's state is unknown either way, so it is not reused
            task = asyncio.get_running_loop().create_task(self._replace(worker))
            self.replacing.add(task)
            task.add_done_callback(self.replacing.discard)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise WorkerError(f"worker process {worker.process.pid} died "
                              f"(exit code {worker.process.returncode})") from None
        self.idle.put_nowait(worker)
        if "error" in reply:
            raise WorkerError(reply["error"])
        return reply["answers"]

    async def _replace(self, worker: Worker) -> None:
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

def serve_requests(model: str | None, backend: str, threshold: float, max_pixels: int, threads: int) -> None:
    """Load the model, say so, then answer requests from stdin until it closes."""
    from digitlab.recognition.engine import load_engine
    from digitlab.serve.app import Limits, Readers

    # The protocol owns the real stdout; anything a library prints goes to stderr instead of corrupting it.
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    source = sys.stdin.buffer
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
    engine = load_engine(model, backend, **({"threads": threads} if backend == "onnx" else {}))
    readers = Readers(engine, threshold, Limits(max_pixels=max_pixels))
    _write(channel, {"metadata": engine.metadata})
    while len(head := source.read(REQUEST_HEAD.size)) == REQUEST_HEAD.size:
        header_size, size = REQUEST_HEAD.unpack(head)
        body = source.read(size)
        if len(body) < size:
            return
        request = json.loads(body[:header_size])
        offsets = [header_size]
        for item_size in request["sizes"]:
            offsets.append(offsets[-1] + item_size)
        items = [(name, body[start:end]) for name, start, end in zip(request["names"], offsets, offsets[1:])]
        try:
            reply = {"answers": readers.recognise(request["polarity"], request["threshold"], items,
                                                  request["multi"])}
        except Exception:  # the traceback stays in this process's log; the server answers 500
            log.exception("unhandled error in a worker process")
            reply = {"error": "internal error in a worker process"}
        _write(channel, reply)


def _write(channel, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    channel.write(LENGTH.pack(len(data)) + data)
    channel.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description="a worker process of `digitlab serve` (started by the server)")
    parser.add_argument("--model")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--threshold", type=float, required=True)
    parser.add_argument("--max-pixels", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--nice", type=int, default=0, help="added to this process's niceness")
    args = parser.parse_args()
    if args.nice:
        os.nice(args.nice)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the server ends us by EOF
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(name)s: %(message)s")
    try:
        serve_requests(args.model, args.backend, args.threshold, args.max_pixels, args.threads)
    except ValueError as exc:  # a model file that cannot be loaded: one line, and the server reports the exit
        print(f"digitlab serve: worker process: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (BrokenPipeError, KeyboardInterrupt):
        pass


if __name__ == "__main__":
    main()
