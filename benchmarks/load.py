"""Load test: concurrent clients post 280x280 canvas PNGs to `digitlab serve` on 127.0.0.1, for each backend.

    python benchmarks/load.py                                   # bundled model, torch and onnx, 16 clients, 30 s
    python benchmarks/load.py --model runs/x/model.safetensors --clients 16 --seconds 30

For each backend a server is started in its own process (`python -m digitlab.cli serve`), and ``--clients``
keep-alive connections post, one request at a time each, PNGs like the page sends: MNIST test digits drawn as
dark strokes on a white 280x280 canvas. A request counts as an error unless it answers 200 with a digit. Bounded
twice: ``--seconds`` per backend and ``--max-requests`` in all. Prints requests/s and latency percentiles with
the hardware, the load on the machine before and after, the versions and the command.
"""

from __future__ import annotations

import argparse
import asyncio
import io
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

from machine import StolenTime, hardware, versions


def canvas_pngs(count: int) -> list[bytes]:
    """MNIST test digits as the page's canvas would send them: dark ink on white, 280x280, RGBA PNG."""
    from PIL import Image

    from digitlab.data import load_mnist

    images, _ = load_mnist("test")
    pngs = []
    for digit in images[:count].numpy():
        ink = Image.fromarray(digit).resize((200, 200), Image.BILINEAR)
        canvas = Image.new("L", (280, 280), 0)
        canvas.paste(ink, (40, 40))
        gray = 255 - np.asarray(canvas)
        rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
        buffer = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buffer, "PNG")
        pngs.append(buffer.getvalue())
    return pngs


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


async def client(port: int, requests: list[bytes], offset: int, stop_at: float, budget: list[int],
                 latencies: list[float], errors: list[str]) -> None:
    """One keep-alive connection posting one request at a time until the time or the request budget runs out.

    The clients share the CPUs with the server, so each request is prebuilt and an answer is read in three calls."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    k = offset
    try:
        while time.perf_counter() < stop_at and budget[0] > 0:
            budget[0] -= 1
            request = requests[k % len(requests)]
            k += 1
            start = time.perf_counter()
            writer.write(request)
            try:
                async with asyncio.timeout(10):
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                    payload = await reader.readexactly(int(length[1]) if length else 0)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as exc:
                errors.append(f"{type(exc).__name__}")
                return
            latencies.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200") or "digit" not in json.loads(payload):
                errors.append(head.split(b"\r\n", 1)[0].decode())
    finally:
        writer.close()


def post_requests(bodies: list[bytes]) -> list[bytes]:
    """Each body as a complete HTTP/1.1 request to /api/predict on a keep-alive connection."""
    return [(f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
             f"Content-Length: {len(body)}\r\n\r\n").encode() + body for body in bodies]


async def run_load(port: int, bodies: list[bytes], clients: int, seconds: float, max_requests: int):
    latencies: list[float] = []
    errors: list[str] = []
    budget = [max_requests]
    requests = post_requests(bodies)
    start = time.perf_counter()
    await asyncio.gather(*(client(port, requests, i * 7, start + seconds, budget, latencies, errors)
                           for i in range(clients)))
    return latencies, errors, time.perf_counter() - start


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
    parser.add_argument("--max-requests", type=int, default=60_000, help="stop after this many requests per backend")
    parser.add_argument("--server-workers", type=int, help="the server's --workers (default: its own default)")
    parser.add_argument("--worker-nice", type=int, help="the server's --worker-nice (default: its own default)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    args = parser.parse_args()

    bodies = canvas_pngs(64)
    print(f"command: {' '.join([Path(sys.executable).name] + sys.argv)}")
    print(f"hardware: {hardware()}")
    print(f"versions: {versions()}")
    print(f"load: {args.clients} clients, one request in flight each, {args.seconds:g} s per backend "
          f"(after {args.warmup:g} s warm-up), at most {args.max_requests} requests; "
          f"{len(bodies)} different 280x280 RGBA canvas PNGs of {np.mean([len(b) for b in bodies]) / 1000:.1f} kB "
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
                before, server_cpu, client_cpu = os.getloadavg(), cpu_seconds(server.pid), time.process_time()
                with StolenTime() as stolen:
                    latencies, errors, elapsed = asyncio.run(run_load(port, bodies, args.clients, args.seconds,
                                                                      args.max_requests))
                after = os.getloadavg()
                server_cpu = np.subtract(cpu_seconds(server.pid), server_cpu)
                client_cpu = time.process_time() - client_cpu
            finally:
                server.terminate()
                server.wait(timeout=10)
            ms = np.array(latencies) * 1000
            print(f"{backend:>5}: {len(ms)} requests in {elapsed:.1f} s = {len(ms) / elapsed:.0f} requests/s, "
                  f"{len(errors)} errors; latency p50 {np.percentile(ms, 50):.1f} ms, p90 {np.percentile(ms, 90):.1f} "
                  f"ms, p99 {np.percentile(ms, 99):.1f} ms, max {ms.max():.1f} ms; load average before "
                  f"{before[0]:.2f}, after {after[0]:.2f}; {stolen}"
                  + (f"; first errors: {errors[:3]}" if errors else ""))
            # What the machine's load cannot hide: CPU time spent per request, by the server and by these clients.
            http, workers = 1000 * server_cpu / max(1, len(ms))
            clients = 1000 * client_cpu / max(1, len(ms))
            print(f"       CPU per request: server {http + workers:.2f} ms (HTTP process {http:.2f}, worker processes "
                  f"{workers:.2f}), load clients {clients:.2f} ms; so {os.cpu_count()} CPUs doing nothing else could "
                  f"answer at most ~{os.cpu_count() * 1000 / (http + workers + clients):.0f} requests/s")


def _export(model: str | None, out: Path) -> str:
    from digitlab.export import export_onnx

    export_onnx(model, out, check_images=500)
    return str(out)


if __name__ == "__main__":
    try:  # the clients share the CPUs with the server: the C event loop, where installed, takes less of them
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    main()
