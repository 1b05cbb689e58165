"""How close one answer comes to the floor of loading its libraries: `digitlab predict one.png` (default engine and
``--backend torch``) and `digitlab serve` from its start to its first answer, beside ``python -c "import numpy, cv2,
onnxruntime, PIL.Image"``, all in one run.

Each command is the one a user types, in a fresh process, start-up included. The commands take turns run after run,
so a change in what else the machine does falls on all of them alike, and each ratio is taken within one round before
the median is taken. The serve figure is from starting `digitlab serve` (its default worker processes) to the first 200
answer to ``POST /api/predict`` with the image, polled every 10 ms. The image is MNIST test digit 0 drawn as a
person sends one (dark ink on white, 112 px). The package's bytecode is compiled first, as ``pip install`` does, so
no run pays for compiling digitlab's sources.

With ``--baseline SRC`` (another checkout's ``src`` folder, e.g. one of the main branch; repeat it for more) `digitlab
serve` from that code is timed too, in the same rounds, so a change to serve's start-up is compared with the code
before it on the same machine at the same moments.

    python benchmarks/speed_floor.py                  # 5 rounds
    python benchmarks/speed_floor.py --runs 9
    python benchmarks/speed_floor.py --baseline ../main/src
    python benchmarks/speed_floor.py --baseline ../main/src --baseline old/src   # git archive COMMIT src | tar -x -C old
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import StolenTime, conditions, cpu_flags, hardware, versions  # noqa: E402

FLOOR = "import numpy, cv2, onnxruntime, PIL.Image"


def one_image(folder: Path) -> Path:
    from PIL import Image

    from digitlab.datasets.mnist import read_mnist

    images, _ = read_mnist("test")
    path = folder / "one.png"
    Image.fromarray(255 - images[0]).resize((112, 112), Image.BILINEAR).save(path)
    return path


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def serve_to_first_answer(image: Path, source: Path | None = None, timeout: float = 120.0) -> float:
    """Seconds from starting `digitlab serve` (from the package in ``source``, None: this one) to its first answer to
    the image."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = image.read_bytes()
    start = time.perf_counter()
    environment = None if source is None else {**os.environ, "PYTHONPATH": str(source)}
    server = subprocess.Popen([sys.executable, "-m", "digitlab", "serve", "--port", str(port), "--log-level",
                               "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    try:
        while time.perf_counter() - start < timeout:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/predict", data=data, method="POST",
                                             headers={"Content-Type": "image/png"})
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    json.load(response)
                    return time.perf_counter() - start
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError(f"digitlab serve exited with code {server.returncode}") from None
                time.sleep(0.01)
        raise RuntimeError(f"digitlab serve gave no answer within {timeout:g} s")
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds of the commands (default: 5)")
    parser.add_argument("--baseline", type=Path, metavar="SRC", action="append", default=[],
                        help="also time `digitlab serve` from the package in this folder (another checkout's src), in "
                        "the same rounds; repeat for more (default: none)")
    args = parser.parse_args()

    import digitlab

    compileall.compile_dir(Path(digitlab.__file__).parent, quiet=1)
    baselines = {}  # the name of each baseline's row -> its src folder
    for number, source in enumerate(args.baseline, 1):
        source = source.resolve()
        if not (source / "digitlab" / "__init__.py").is_file():
            parser.error(f"--baseline {source}: no digitlab package there")
        compileall.compile_dir(source / "digitlab", quiet=1)
        baselines["serve, baseline" + (f" {number}" if len(args.baseline) > 1 else "")] = source
    folder = Path(tempfile.mkdtemp(prefix="speed_floor-"))
    image = one_image(folder)
    digitlab_cli = [sys.executable, "-m", "digitlab", "predict"]
    commands = {
        "import floor": lambda: timed([sys.executable, "-c", FLOOR]),
        "predict (default engine)": lambda: timed([*digitlab_cli, str(image)]),
        "predict --backend torch": lambda: timed([*digitlab_cli, "--backend", "torch", str(image)]),
        "serve to first answer": lambda: serve_to_first_answer(image),
    }
    for name, source in baselines.items():
        commands[name] = lambda source=source: serve_to_first_answer(image, source)
    print(f"{hardware()}; CPU flags: {cpu_flags()}")
    for name, source in baselines.items():
        print(f"{name.removeprefix('serve, ')}: {source}")
    print(versions())
    print(f"before: {conditions()}")
    for measure in commands.values():  # one warm-up round: the files in the page cache for every command
        measure()
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    with StolenTime() as stolen:
        for _ in range(args.runs):
            for name, measure in commands.items():
                seconds[name].append(measure())
    print(f"after {args.runs} rounds: {conditions(stolen)}")
    floor, predict = seconds["import floor"], seconds["predict (default engine)"]
    print(f"{'command':28} {'median s':>9} {'min':>7} {'max':>7}  ratio (median of per-round ratios)")
    for name, times in seconds.items():
        ratios = [f"{statistics.median(t / f for t, f in zip(times, floor)):.2f}x the import floor"]
        if name.startswith("serve"):
            ratios.append(f"{statistics.median(t / p for t, p in zip(times, predict)):.2f}x one-image predict")
        if name == "serve to first answer":
            for baseline in baselines:
                ratios.append(f"{statistics.median(t / b for t, b in zip(times, seconds[baseline])):.2f}x "
                              f"{baseline.removeprefix('serve, ')}'s")
        print(f"{name:28} {statistics.median(times):9.3f} {min(times):7.3f} {max(times):7.3f}  {', '.join(ratios)}")
    print("targets: one image <= 1.5x the import floor; serve to its first answer <= 2x a one-image predict")


if __name__ == "__main__":
    main()
