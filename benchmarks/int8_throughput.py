"""int8 against fp32 on onnxruntime: images/s at batch 1 and 256, and MNIST test accuracy, side by side.

    python benchmarks/int8_throughput.py                 # the bundled model's fp32 and int8 exports
    python benchmarks/int8_throughput.py --fp32 model.onnx --int8 model.int8.onnx --repeats 9
    python benchmarks/int8_throughput.py --variants      # every quantisation setting, quantised here: the choice

Each model is timed through ``engine.OnnxEngine`` (what predict and serve run) for ``--seconds`` per cell; the
cells are interleaved (every model once per batch size, then again, ``--repeats`` times), so a change in the
machine's load falls on all of them alike. The table shows the minimum and median images/s over the repeats and
the median's ratio to fp32. Only the model call is timed (no decoding or preprocessing). Prints the hardware, its
int8 instructions (VNNI, AMX), the load average, the CPU time the host stole, the versions and the command.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from inference_throughput import throughput  # noqa: E402
from machine import StolenTime, hardware, versions  # noqa: E402

INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_flags() -> str:
    """Which of the instructions onnxruntime's int8 kernels use this CPU announces (Linux; 'unknown' elsewhere)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    present = set(flags.split(":", 1)[1].split())
    return ", ".join(f"{flag} {'yes' if flag in present else 'no'}" for flag in INT8_FLAGS)


def build_variants(fp32_path: Path, scratch: Path, calibration_images: int,
                   pre_processed: bool = False) -> dict[str, Path]:
    """Every quantisation setting of ``quantise.quantise`` (onnxruntime's pre-processing only when
    ``pre_processed``), written into ``scratch``: {label: path}. "fp32-first": ``quantise.fp32_nodes`` left fp32."""
    import onnx

    from digitlab.recognition.engine import OnnxEngine
    from digitlab.training import quantise

    meta = OnnxEngine(fp32_path).metadata
    calibration = quantise.calibration_inputs(meta, calibration_images)
    graph = fp32_path.read_bytes()
    models = {}
    for quant_format, per_channel, fp32_first, preprocess in itertools.product(
            quantise.FORMATS, (False, True), (False, True), (False, True) if pre_processed else (False,)):
        label = (f"{quant_format}{' per-channel' if per_channel else ''}{' fp32-first' if fp32_first else ''}"
                 f"{' pre-processed' if preprocess else ''}")
        path = scratch / f"{label.replace(' ', '_')}.onnx"
        path.write_bytes(quantise.quantise(graph, calibration, quant_format=quant_format, per_channel=per_channel,
                                           preprocess=preprocess, single_channel_fp32=fp32_first))
        onnx.checker.check_model(str(path))
        models[label] = path
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fp32", help="an fp32 .onnx export (default: the bundled one)")
    parser.add_argument("--int8", help="its int8 export (default: the bundled one)")
    parser.add_argument("--variants", action="store_true", help="time every quantisation setting instead of --int8, "
                        "each quantised here from --fp32")
    parser.add_argument("--pre-processed", action="store_true", help="with --variants: also each with onnxruntime's "
                        "quantisation pre-processing (twice as many)")
    parser.add_argument("--calibration-images", type=int, default=1000, help="for --variants (default: %(default)s)")
    parser.add_argument("--batch-sizes", default="1,256")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime's threads per model (0: its default)")
    args = parser.parse_args()

    import onnxruntime

    from digitlab.recognition.backends import BUNDLED_INT8, BUNDLED_ONNX
    from digitlab.recognition.engine import OnnxEngine
    from digitlab.training import quantise
    from digitlab.datasets.mnist import read_mnist

    fp32_path = Path(args.fp32 or BUNDLED_ONNX)
    with tempfile.TemporaryDirectory() as scratch:
        paths = {"fp32": fp32_path}
        if args.variants:
            paths |= build_variants(fp32_path, Path(scratch), args.calibration_images, args.pre_processed)
        else:
            paths["int8"] = Path(args.int8 or BUNDLED_INT8)
        engines = {label: OnnxEngine(path, threads=args.threads or None) for label, path in paths.items()}
        sizes = {label: path.stat().st_size for label, path in paths.items()}

        meta = engines["fp32"].metadata
        images, labels = read_mnist("test")
        inputs = quantise.normalised(images, meta)
        accuracies = {label: quantise.accuracy(path, inputs, labels) for label, path in paths.items()}

    print(f"command: {' '.join([Path(sys.executable).name] + sys.argv)}")
    print(f"hardware: {hardware()}")
    print(f"int8 instructions: {cpu_flags()}")
    print(f"versions: {versions()}")
    print(f"threads: onnxruntime {args.threads or 'default'} (onnxruntime {onnxruntime.__version__}); "
          f"{args.repeats} interleaved repeats of {args.seconds:g} s per cell")
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at the start\n")
    width = max(map(len, engines)) + 2
    print(f"{'model':<{width}}{'MB':>6}{'accuracy':>10}")
    for label in engines:
        print(f"{label:<{width}}{sizes[label] / 1e6:>6.2f}{accuracies[label]:>10.2%}")

    with StolenTime() as stolen:
        for size in (int(s) for s in args.batch_sizes.split(",")):
            batch = np.ascontiguousarray(np.resize(inputs[:256], (size, 1, 28, 28)))
            cells = {label: [] for label in engines}
            for engine in engines.values():
                throughput(engine.logits, batch, 0.3)  # warm-up
            for _ in range(args.repeats):
                for label, engine in engines.items():
                    cells[label].append(throughput(engine.logits, batch, args.seconds))
            base = np.median(cells["fp32"])
            print(f"\nbatch {size}: images/s{'min':>{width + 2}}{'median':>10}{'vs fp32':>9}")
            for label, runs in cells.items():
                print(f"  {label:<{width + 8}}{min(runs):>10,.0f}{np.median(runs):>10,.0f}"
                      f"{np.median(runs) / base:>8.2f}x")
    print(f"\nload average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at the end; {stolen}")


if __name__ == "__main__":
    main()
