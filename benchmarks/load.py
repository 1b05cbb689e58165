"""Load test: concurrent clients post 280x280 canvas PNGs to `digitlab serve` on 127.0.0.1, for each backend.

    python benchmarks/load.py                                   # bundled model, torch and onnx, 16 clients, 30 s
    python benchmarks/load.py --model runs/x/model.safetensors --clients 16 --seconds 30 --rates max,250,300

For each backend a server is started in its own process (`python -m digitlab.cli serve`), and ``--clients``
keep-alive connections post, one request at a time each, PNGs as the page sends them: MNIST test digits drawn as
dark strokes on a white 280x280 canvas and encoded by Chromium's canvas.toBlob() (``--pngs pillow``: by Pillow,
as before; benchmarks/browser_pngs.py says how the two differ). A request counts as an error unless it answers 200
with a digit.

Each server is measured twice by default (``--rates max,300``), since one run cannot tell both things apart:
- closed loop ("max"): every client sends again as soon as it has its answer. This finds the most requests/s the
  server answers; its latency is then mostly queueing, ``clients / throughput`` on average (Little's law: 16
  clients at 330 requests/s wait 48 ms on average however fast each request is served).
- a fixed rate: requests are due at a steady ``rate`` per second and any free client sends the next one; latency
  counts from when a request was due. This is the latency a user sees while the server carries that load.
Bounded twice: ``--seconds`` per run and ``--max-requests``. Prints requests/s and latency percentiles with the
hardware, the load on the machine before and after, the CPU time the host stole, the versions and the command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from machine import StolenTime, cpu_times, hardware, stolen_share, versions


def canvas_pngs(count: int, encoder: str = "browser") -> list[bytes]:
    """MNIST test digits as the page's canvas sends them: dark ink on white, 280x280, RGBA PNG, encoded by
    Chromium's canvas.toBlob() ("browser", as the page really sends them) or by Pillow at its default level."""
    from browser_pngs import browser_canvas_pngs, pillow_canvas_pngs

    return browser_canvas_pngs(count) if encoder == "browser" else pillow_canvas_pngs(count)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str | None, backend: str, port: int, workers: int | None = None,
                 worker_nice: int | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "digitlab.cli", "serve", "--backend", backend, "--port", str(port),
               "--log-level", "warning"] + (["--model", model] if model else []) + \
              (["--workers", str(workers)] if workers else []) + \
              (["--worker-nice", str(worker_nice)] if worker_nice is not None else [])
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
            return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise SystemExit(f"server did not start: {process.stderr.read().decode()[-1500:]}")
            time.sleep(0.2)


class Pace:
    """When each request is due. Closed loop (``rate`` None): as soon as a client has its previous answer, so the
    server is saturated and latency is mostly the wait behind the other clients' requests. Fixed rate: request n is
    due ``n / rate`` s after the start, whichever client is free takes it, and its latency counts from when it was
    due, not from when a client got round to sending it (a late send is the server's delay too, as wrk2 counts it).
    Every request due before the end is sent, a backlog's too, for up to ``DRAIN`` s after it: dropping them would
    leave out the slowest answers."""

    DRAIN = 10.0

    def __init__(self, start: float, seconds: float, max_requests: int, rate: float | None):
        self.start, self.stop_at, self.left, self.rate, self.issued = start, start + seconds, max_requests, rate, 0

    def next_due(self) -> float | None:
        now = time.perf_counter()
        if self.rate is None:
            due, last_send = now, self.stop_at
        else:
            due, last_send = self.start + self.issued / self.rate, self.stop_at + self.DRAIN
        if due >= self.stop_at or now >= last_send or self.left <= 0:
            return None
        self.issued += 1
        self.left -= 1
        return due


async def client(port: int, requests: list[bytes], offset: int, pace: Pace,
                 answered: list[tuple[float, float]], errors: list[str]) -> None:
    """One keep-alive connection posting one request at a time, each when it is due, until the pace says stop;
    records when each was due (s from the start) and its latency (s).

    The clients share the CPUs with the server, so each request is prebuilt and an answer is read in three calls."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    k = offset
    try:
        while (due := pace.next_due()) is not None:
            request = requests[k % len(requests)]
            k += 1
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            writer.write(request)
            try:
                async with asyncio.timeout(10):
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                    payload = await reader.readexactly(int(length[1]) if length else 0)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as exc:
                errors.append(f"{type(exc).__name__}")
                return
            answered.append((due - pace.start, time.perf_counter() - due))
            if not head.startswith(b"HTTP/1.1 200") or "digit" not in json.loads(payload):
                errors.append(head.split(b"\r\n", 1)[0].decode())
    finally:
        writer.close()


def post_requests(bodies: list[bytes]) -> list[bytes]:
    """Each body as a complete HTTP/1.1 request to /api/predict on a keep-alive connection."""
    return [(f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
             f"Content-Length: {len(body)}\r\n\r\n").encode() + body for body in bodies]


async def run_load(port: int, bodies: list[bytes], clients: int, seconds: float, max_requests: int,
                   rate: float | None = None):
    """Returns (when due, latency) of every answered request, the errors, the seconds it took and the share of CPU
    time the host stole in each second of it."""
    answered: list[tuple[float, float]] = []
    errors: list[str] = []
    requests = post_requests(bodies)
    start = time.perf_counter()
    pace = Pace(start, seconds, max_requests, rate)
    stolen: list[float | None] = []
    sampler = asyncio.get_running_loop().create_task(_sample_stolen(stolen))
    await asyncio.gather(*(client(port, requests, i * 7, pace, answered, errors) for i in range(clients)))
    sampler.cancel()
    return answered, errors, time.perf_counter() - start, stolen


async def _sample_stolen(shares: list[float | None]) -> None:
    before = cpu_times()
    while True:
        await asyncio.sleep(1.0)
        after = cpu_times()
        shares.append(stolen_share(before, after))
        before = after


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User + system CPU time of a process and of its live children (the server's worker processes), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    children = [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_text().split()]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), sum(sum(cpu_seconds(c)) for c in children)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a .safetensors checkpoint (default: the bundled model)")
    parser.add_argument("--onnx", help="its ONNX export (default: exported here to a temporary file)")
    parser.add_argument("--backends", default="torch,onnx")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rates", default="max,300",
                        help="comma-separated: 'max' (closed loop, each client sends as soon as it has an answer) "
                             "and/or fixed rates in requests/s, each run for --seconds on the same server")
    parser.add_argument("--max-requests", type=int, default=60_000, help="stop after this many requests per run")
    parser.add_argument("--server-workers", type=int, help="the server's --workers (default: its own default)")
    parser.add_argument("--worker-nice", type=int, help="the server's --worker-nice (default: its own default)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    parser.add_argument("--pngs", choices=("browser", "pillow"), default="browser",
                        help="who encodes the canvas PNGs: Chromium's canvas.toBlob(), as the page sends them (needs "
                             "/usr/bin/chromium), or Pillow at its default level (default: browser)")
    parser.add_argument("--timeline", action="store_true",
                        help="also print each second's latency and the CPU time the host stole in it")
    args = parser.parse_args()
    rates = [None if rate == "max" else float(rate) for rate in args.rates.split(",")]

    bodies = canvas_pngs(64, args.pngs)
    print(f"command: {' '.join([Path(sys.executable).name] + sys.argv)}")
    print(f"hardware: {hardware()}")
    print(f"versions: {versions()}")
    print(f"load: {args.clients} clients, one request in flight each, {args.seconds:g} s per run "
          f"(after {args.warmup:g} s warm-up), at most {args.max_requests} requests; "
          f"{len(bodies)} different 280x280 RGBA canvas PNGs ({args.pngs}-encoded) of "
          f"{np.mean([len(b) for b in bodies]) / 1000:.1f} kB "
          f"on average, raw body")
    with tempfile.TemporaryDirectory() as scratch:
        for backend in args.backends.split(","):
            model = args.model
            if backend == "onnx":
                model = args.onnx or _export(args.model, Path(scratch) / "model.onnx")
            port = free_port()
            server = start_server(model, backend, port, args.server_workers, args.worker_nice)
            try:
                asyncio.run(run_load(port, bodies, args.clients, args.warmup, args.max_requests))
                for rate in rates:
                    measure(backend, server, port, bodies, args, rate)
            finally:
                server.terminate()
                server.wait(timeout=10)


def measure(backend: str, server: subprocess.Popen, port: int, bodies: list[bytes], args, rate: float | None) -> None:
    """One run against a started server, printed as two lines (and with ``--timeline`` a line per second)."""
    before, server_cpu, client_cpu = os.getloadavg(), cpu_seconds(server.pid), time.process_time()
    with StolenTime() as stolen:
        answered, errors, elapsed, stolen_each = asyncio.run(run_load(port, bodies, args.clients, args.seconds,
                                                                      args.max_requests, rate))
    after = os.getloadavg()
    server_cpu = np.subtract(cpu_seconds(server.pid), server_cpu)
    client_cpu = time.process_time() - client_cpu
    due, ms = np.array(answered, dtype=np.float64).reshape(-1, 2).T
    ms = ms * 1000
    offered = "closed loop" if rate is None else f"offered {rate:g}/s"
    print(f"{backend:>5}, {offered}: {len(ms)} requests in {elapsed:.1f} s = {len(ms) / elapsed:.0f} requests/s, "
          f"{len(errors)} errors; latency p50 {np.percentile(ms, 50):.1f} ms, p90 {np.percentile(ms, 90):.1f} "
          f"ms, p99 {np.percentile(ms, 99):.1f} ms, max {ms.max():.1f} ms; load average before "
          f"{before[0]:.2f}, after {after[0]:.2f}; {stolen}"
          + (f"; first errors: {errors[:3]}" if errors else "")
          + (" - FELL BEHIND: answered fewer per second than offered (the backlog was sent after the end and its "
             "latency counted)" if rate is not None and len(ms) / elapsed < 0.97 * rate else ""))
    # What the machine's load cannot hide: CPU time spent per request, by the server and by these clients.
    http, workers = 1000 * server_cpu / max(1, len(ms))
    clients = 1000 * client_cpu / max(1, len(ms))
    print(f"       CPU per request: server {http + workers:.2f} ms (HTTP process {http:.2f}, worker processes "
          f"{workers:.2f}), load clients {clients:.2f} ms; so {os.cpu_count()} CPUs doing nothing else could "
          f"answer at most ~{os.cpu_count() * 1000 / (http + workers + clients):.0f} requests/s")
    if args.timeline:
        for second, share in enumerate(stolen_each):
            inside = ms[(due >= second) & (due < second + 1)]
            if len(inside):
                print(f"       second {second:>3}: {len(inside):>4} requests due, latency p50 "
                      f"{np.percentile(inside, 50):6.1f} ms, p99 {np.percentile(inside, 99):6.1f} ms; stolen "
                      + ("unknown" if share is None else f"{100 * share:4.1f}%"))


def _export(model: str | None, out: Path) -> str:
    from digitlab.training.export import export_onnx

    export_onnx(model, out, check_images=500)
    return str(out)


if __name__ == "__main__":
    try:  # the clients share the CPUs with the server: the C event loop, where installed, takes less of them
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    main()
