"""Model throughput alone: parameters, size on disk, and images/s at batch 1 and 256, PyTorch against onnxruntime.

    python benchmarks/inference_throughput.py                     # the bundled model
    python benchmarks/inference_throughput.py --model runs/x/model.safetensors --runs 5 --seconds 2

Each (backend, batch size) is warmed up, then timed ``--runs`` times for about ``--seconds`` each; the table shows
the mean and the spread (min-max) over the runs. Only the model call is timed: no decoding or preprocessing (see
load.py for the whole request). Prints the hardware, the machine's load, the versions and the command.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from machine import StolenTime, hardware, versions  # noqa: E402


def throughput(logits, batch: np.ndarray, seconds: float) -> float:
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        logits(batch)
        calls += 1
    return calls * len(batch) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a .safetensors checkpoint (default: the bundled model)")
    parser.add_argument("--onnx", help="its ONNX export (default: exported here to a temporary file)")
    parser.add_argument("--batch-sizes", default="1,256")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for both runtimes (0: their default)")
    args = parser.parse_args()

    import onnxruntime
    import torch

    from digitlab.training.data import load_mnist
    from digitlab.recognition.engine import OnnxEngine, TorchEngine, normalise
    from digitlab.training.export import export_onnx

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = args.onnx or Path(scratch) / "model.onnx"
        if not args.onnx:
            export_onnx(args.model, onnx_path, check_images=500)
        engines = {"torch": TorchEngine(args.model), "onnxruntime": OnnxEngine(onnx_path, threads=args.threads or None)}
    meta = engines["torch"].metadata
    images, _ = load_mnist("test")
    inputs = normalise(images[:256].numpy() / 255.0, meta["normalisation"]["mean"], meta["normalisation"]["std"])

    print(f"command: {' '.join([Path(sys.executable).name] + sys.argv)}")
    print(f"hardware: {hardware()}; load average {os.getloadavg()[0]:.2f} at the start")
    print(f"versions: {versions()}")
    from digitlab.training.checkpoint import BUNDLED
    from digitlab.training.models import count_parameters

    weights = Path(args.model or BUNDLED)
    print(f"model: {meta['arch']} ({weights}): {count_parameters(engines['torch'].model):,} parameters, "
          f"{weights.stat().st_size / 1024:.0f} KiB on disk")
    print(f"threads: torch {torch.get_num_threads()}, "
          f"onnxruntime {args.threads or 'default'} (onnxruntime {onnxruntime.__version__})")
    print(f"{args.runs} runs of {args.seconds:g} s each per cell; images/s mean (min-max)\n")
    print(f"{'batch':>6} {'torch':>26} {'onnxruntime':>26} {'ratio':>7}")
    with StolenTime() as stolen:
        for size in (int(s) for s in args.batch_sizes.split(",")):
            batch = np.ascontiguousarray(np.resize(inputs, (size, 1, 28, 28)))
            cells = {}
            for name, engine in engines.items():
                throughput(engine.logits, batch, 0.3)  # warm-up
                cells[name] = [throughput(engine.logits, batch, args.seconds) for _ in range(args.runs)]
            text = [f"{np.mean(r):>10,.0f} ({min(r):,.0f}-{max(r):,.0f})" for r in cells.values()]
            ratio = np.mean(cells["onnxruntime"]) / np.mean(cells["torch"])
            print(f"{size:>6} {text[0]:>26} {text[1]:>26} {ratio:>6.1f}x")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end; {stolen}")


if __name__ == "__main__":
    main()
