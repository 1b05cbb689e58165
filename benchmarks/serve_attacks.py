"""Attack a local `digitlab serve` (127.0.0.1 only, bounded in time and bytes) and time a normal client meanwhile.

    python benchmarks/serve_attacks.py [--header-mb 100] [--trickle-seconds 20]

1. one client sends a request whose header grows to --header-mb megabytes, 64 kB at a time;
2. 32 bodies trickle in at one byte a second from 4 addresses (127.0.0.11-14), 8 each;
meanwhile another address POSTs a 28x28 PNG to /api/predict every 0.2 s. Prints, per phase: the prober's median and
worst latency and its statuses, and what the attacker got.
"""
import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
from PIL import Image


def png() -> bytes:
    image = np.zeros((28, 28), np.uint8)
    image[6:22, 12:16] = 255
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def post(address, data: bytes, client: str = "127.0.0.2") -> tuple[int, float]:
    start = time.monotonic()
    with socket.create_connection(address, timeout=60, source_address=(client, 0)) as c:
        c.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: %d\r\n"
                  b"Connection: close\r\n\r\n" % len(data) + data)
        answer = b""
        while piece := c.recv(65536):
            answer += piece
    return int(answer.split(b" ", 2)[1]), time.monotonic() - start


def probe(address, stop: threading.Event, results: list, client: str):
    data = png()
    while not stop.is_set():
        try:
            results.append(post(address, data, client))
        except OSError as exc:
            results.append((type(exc).__name__, 0.0))
        time.sleep(0.2)


def summary(results) -> str:
    times = [t for s, t in results if s == 200]
    statuses = {}
    for s, _ in results:
        statuses[s] = statuses.get(s, 0) + 1
    if not times:
        return f"no 200s; statuses {statuses}"
    return (f"{len(results)} requests, median {1000 * statistics.median(times):.0f} ms, worst "
            f"{1000 * max(times):.0f} ms; statuses {statuses}")


def huge_header(address, megabytes: int) -> str:
    sent = 0
    start = time.monotonic()
    with socket.create_connection(address, timeout=120) as c:
        c.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ")
        try:
            while sent < megabytes * 2**20:
                c.sendall(b"a" * 65536)
                sent += 65536
            c.sendall(b"\r\n\r\n")
            answer = c.recv(200)
        except OSError as exc:
            answer = f"{type(exc).__name__} after the server closed".encode()
            try:
                answer = c.recv(200) or answer
            except OSError:
                pass
    first_line = answer.split(b"\r\n")[0].decode(errors="replace")
    return f"sent {sent / 2**20:.1f} MB in {time.monotonic() - start:.1f} s; answer: {first_line}"


def trickle(address, seconds: int) -> str:
    connections = []
    for i in range(32):
        c = socket.create_connection(address, timeout=5, source_address=(f"127.0.0.{11 + i % 4}", 0))
        c.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\nx")
        connections.append(c)
    end = time.monotonic() + seconds
    answered = {}
    while time.monotonic() < end:
        time.sleep(1)
        for c in connections:
            if c in answered:
                continue
            try:
                c.setblocking(False)
                try:
                    answer = c.recv(200)
                    if answer:
                        answered[c] = answer.split(b" ", 2)[1].decode()
                        continue
                except BlockingIOError:
                    pass
                c.setblocking(True)
                c.sendall(b"x")
            except OSError:
                answered.setdefault(c, "closed")
    for c in connections:
        c.close()
    counts = {}
    for status in answered.values():
        counts[status] = counts.get(status, 0) + 1
    return f"32 trickled bodies: {len(answered)} answered or closed within {seconds} s: {counts}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--header-mb", type=int, default=100)
    parser.add_argument("--trickle-seconds", type=int, default=20)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "digitlab", "serve", "--backend", "onnx", "--workers", "1",
                               "--port", str(port), "--log-level", "error"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    address = ("127.0.0.1", port)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                post(address, png())
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "the server did not start"
                time.sleep(0.3)
        print("load average", " ".join(f"{x:.2f}" for x in os.getloadavg()))
        for name, attack in (("quiet", lambda: (time.sleep(5), "no attack")[1]),
                             (f"{args.header_mb} MB header", lambda: huge_header(address, args.header_mb)),
                             ("trickled bodies", lambda: trickle(address, args.trickle_seconds))):
            stop, results = threading.Event(), []
            prober = threading.Thread(target=probe, args=(address, stop, results, "127.0.0.2"))
            prober.start()
            outcome = attack()
            stop.set()
            prober.join()
            print(f"{name}: attacker: {outcome}\n    prober: {summary(results)}")
        print("load average", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
