"""Memory of `digitlab serve` while many clients send large bodies and hold them, and after they go.

    python benchmarks/upload_memory.py                         # 50 connections, 10 MiB - 1 byte each, then hold
    python benchmarks/upload_memory.py --connections 50 --hold 5

A server (`python -m digitlab serve --backend onnx --workers 1`, the code on PYTHONPATH) is started on a free
loopback port. Each connection, from an address of its own (127.0.x.y), declares a Content-Length of 10 MiB (the
default upload limit), sends one byte less and holds the connection open: the server has to keep what it received
until the body is given up. Prints the server process's resident memory (VmRSS, its own process, not the worker's)
before, while the bodies are held, and after the clients have closed, with what each connection was answered, the
load on the machine and the command. Run it once per version to compare (PYTHONPATH=src of each checkout); results:
docs/serving.md, 'Memory under large uploads'.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

MIB = 2**20


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def upload_and_hold(port: int, size: int, results: list, index: int, go: threading.Event) -> socket.socket | None:
    """Send the headers of a ``size``-byte POST and ``size - 1`` bytes of it; note what the server answered (if it
    answered while the body was still coming) and keep the connection open until ``go``."""
    client = f"127.0.{1 + index // 250}.{1 + index % 250}"  # each from its own address, as from many clients
    connection = socket.create_connection(("127.0.0.1", port), timeout=120, source_address=(client, 0))
    try:
        connection.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream"
                           b"\r\nContent-Length: %d\r\n\r\n" % size)
        piece, left = b"x" * 65536, size - 1
        while left:
            connection.sendall(piece[:left])
            left -= min(left, len(piece))
    except OSError:  # the server closed the connection early
        pass
    connection.settimeout(1)
    try:  # an answer before the body is whole is a refusal (a server that discards the rest of the body)
        results[index] = connection.recv(200).split(b"\r\n", 1)[0].decode() or "closed"
    except TimeoutError:
        results[index] = "held"
    except OSError:
        results[index] = "closed"
    go.wait()
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--size-mib", type=float, default=10.0, help="the Content-Length declared (default: 10)")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds the bodies are held before closing")
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "digitlab", "serve", "--backend", "onnx", "--workers", "1",
                               "--port", str(port), "--log-level", "warning"])
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit("the server did not start")
                time.sleep(0.3)
        time.sleep(1)
        before = rss_mib(server.pid)
        size = round(args.size_mib * MIB)
        results: list = [None] * args.connections
        go = threading.Event()
        threads = [threading.Thread(target=upload_and_hold, args=(port, size, results, i, go))
                   for i in range(args.connections)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        while any(result is None for result in results) and time.monotonic() - started < 300:
            time.sleep(0.1)
        sent = time.monotonic() - started
        time.sleep(args.hold)
        held = rss_mib(server.pid)
        go.set()
        for thread in threads:
            thread.join()
        time.sleep(3)
        after = rss_mib(server.pid)
        answered = {}
        for result in results:
            answered[result] = answered.get(result, 0) + 1
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=10) as response:
            alive = response.status
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"{args.connections} connections x {size - 1:,} bytes of a {size:,}-byte body, held {args.hold:g} s "
          f"(sent in {sent:.1f} s)")
    print(f"server RSS: before {before:.0f} MiB, while held {held:.0f} MiB, after they closed {after:.0f} MiB")
    print(f"connections: {answered}; /api/health after: {alive}")
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; python {sys.version.split()[0]}; "
          f"PYTHONPATH={os.environ.get('PYTHONPATH', '')}")
    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))


if __name__ == "__main__":
    main()
