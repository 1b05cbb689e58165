"""digitlab beside Keras on seed 000's recipe, quiet and under a fixed background load, and time to accuracy against
Keras's two epochs, all in one run.

The yardstick is the Keras tutorial network digitlab reproduces (`cnn5x5_dense1000`: Conv32@5x5-Pool-Conv64@5x5-
Pool-Dense1000-Dense10, Adam at 1e-3, batch 128), built from Keras's own layers and trained by ``model.fit`` on the
very arrays digitlab trains on (MNIST read by digitlab, normalised by it and handed over as .npy files). Each side
trains in its own long-lived process with its default threads and waits for its turn, so the epochs interleave:
digitlab, Keras, digitlab with bf16 autocast (`--bf16`), the `default` recipe, digitlab, Keras, ... First on the
machine as it is ("quiet"), then again from fresh processes beside one busy process per CPU that the benchmark starts
itself ("loaded", ``machine.background_load``, as busy_machine.py). Then, on the quiet machine, `fast` to 99.0 %
and `fast_995` to 99.5 % (benchmarks/time_to_accuracy.py's timed runs, with its variants: bf16 autocast, memory
format, batch size, torch.compile) against Keras's first two quiet epochs.

TensorFlow stays out of digitlab's environment: give the interpreter of another one (docs/results.md, 'Beside Keras').

    python benchmarks/keras_side_by_side.py --keras-python /work/tfvenv/bin/python           # the full run
    python benchmarks/keras_side_by_side.py --keras-python /work/tfvenv/bin/python --quick   # a smoke run, minutes

Progress goes to stderr; stdout is the results as markdown, to paste into docs/results.md, 'Beside Keras'.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import StolenTime, background_load, conditions, cpu_flags, hardware, versions

RECIPE = "cnn5x5_dense1000"          # seed 000's recipe, the one the Keras network is built to match
TRAIN_IMAGES = 60_000
QUICK_IMAGES = 12_800                # --quick: 100 batches of 128 per epoch
MARK = "@@ "                         # a worker's answers on stdout start with this; anything else is chatter
# The time-to-accuracy runs, interleaved per seed: (recipe, threshold, time_to_accuracy.Variant's arguments).
TTA_RUNS = (
    ("fast", "0.990", {}),
    ("fast", "0.990", {"bf16": True}),
    ("fast", "0.990", {"channels_last": False}),
    ("fast", "0.990", {"batch_size": 256}),
    ("fast", "0.990", {"compile": True}),
    ("fast_995", "0.995", {}),
    ("fast_995", "0.995", {"bf16": True}),
)
QUICK_TTA_RUNS = TTA_RUNS[:2] + TTA_RUNS[5:]
TARGETS = {"0.990": 1 / 5, "0.995": 1.0}   # at most this share of Keras's two quiet epochs (issue 19)


# --- the workers: one process each, an epoch whenever the parent says "go" ---------------------------------------

def send(message: dict) -> None:
    print(MARK + json.dumps(message), flush=True)


def wait_for_go() -> None:
    if sys.stdin.readline().strip() != "go":
        sys.exit(0)  # the parent is gone or done


def digitlab_worker(recipe: str, epochs: int, limit: int, bf16: bool = False) -> None:
    """``recipe`` as `digitlab train` runs it (the training loop's own epochs, its default threads; with
    ``--bf16`` when asked), one epoch per "go"; then the test accuracy of the weights it would save."""
    from digitlab.threads import available_cpus, yield_when_waiting

    yield_when_waiting()  # as every digitlab entry point does, before torch is imported
    import torch

    from digitlab.training.config import recipe_config
    from digitlab.training.loop import (autocast_for, load_data, measure_test_accuracy, step_schedule,
                                        steps_per_epoch, train_one_epoch)
    from digitlab.training.state import build_state

    torch.set_num_threads(min(torch.get_num_threads(), available_cpus()))
    cfg = recipe_config(recipe, limit=limit, device="cpu", bf16=bf16)
    device = torch.device("cpu")
    torch.manual_seed(cfg.seed)
    train_split, _, nondigits = load_data(cfg, device)
    state = build_state(cfg, device, steps_per_epoch(len(train_split), cfg.batch_size))
    send({"threads": torch.get_num_threads(), "images": len(train_split),
          "parameters": sum(p.numel() for p in state.model.parameters())})
    for epoch in range(1, epochs + 1):
        wait_for_go()
        row = train_one_epoch(cfg, state, train_split, epoch, nondigits=nondigits,
                              autocast=autocast_for(cfg, device))
        step_schedule(cfg, state.schedule, row)
        send(row)
    send(measure_test_accuracy(state.eval_model, cfg))


def keras_worker(folder: str, epochs: int, limit: int, batch_size: int, learning_rate: float) -> None:
    """The tutorial network in Keras, ``model.fit`` over all epochs as the tutorial runs it; a callback holds each
    epoch until the parent's "go" and reports its seconds."""
    import numpy as np

    try:
        import keras
        import tensorflow as tf
    except ImportError as exc:
        send({"error": f"TensorFlow/Keras cannot be imported here ({exc})"})
        return
    x_train, y_train = np.load(Path(folder) / "x_train.npy"), np.load(Path(folder) / "y_train.npy")
    x_test, y_test = np.load(Path(folder) / "x_test.npy"), np.load(Path(folder) / "y_test.npy")
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
    keras.utils.set_random_seed(0)
    # The tutorial's order (ReLU inside each convolution, then pooling): TensorFlow fuses the ReLU into the
    # convolution; digitlab pools first, the same function (models/tutorial.py). Logits out, as digitlab's network.
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 5, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 5, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(1000, activation="relu"),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

    class Turns(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            wait_for_go()
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            send({"seconds": round(time.perf_counter() - self.start, 2), "train_loss": float(logs["loss"]),
                  "train_accuracy": float(logs["accuracy"])})

    send({"threads": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count(),
          "images": len(y_train), "parameters": model.count_params(),
          "versions": f"tensorflow {tf.__version__}, keras {keras.__version__}, numpy {np.__version__}"})
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[Turns()])
    send({"test_accuracy": float(model.evaluate(x_test, y_test, batch_size=1000, verbose=0)[1])})


# --- the parent --------------------------------------------------------------------------------------------------

class Worker:
    """A worker process seen from the parent: its first answer when ready, one answer per epoch, one at the end."""

    def __init__(self, name: str, command: list[str], log_dir: str):
        self.name = name
        self.log = open(Path(log_dir) / f"{name.replace(' ', '_')}.log", "w+")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                        text=True)
        self.ready = self.answer()
        self.epochs: list[dict] = []

    def answer(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(MARK):
                message = json.loads(line[len(MARK):])
                if "error" in message:
                    raise RuntimeError(f"{self.name}: {message['error']}")
                return message
        self.log.seek(0)
        tail = (self.log.read().strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{self.name} stopped (exit {self.process.wait()}): {tail}")

    def epoch(self) -> dict:
        load = os.getloadavg()[0]
        with StolenTime() as stolen:
            self.process.stdin.write("go\n")
            self.process.stdin.flush()
            row = self.answer()
        self.epochs.append(row | {"load_before": load, "stolen": stolen.fraction, "conditions": conditions(stolen)})
        return self.epochs[-1]

    def finish(self) -> dict:
        self.result = self.answer()
        self.process.stdin.close()
        self.process.wait()
        self.log.close()
        return self.result

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


def keras_importable(python: str) -> str | None:
    """None when ``python`` can import TensorFlow and Keras, else why not (in one line)."""
    try:
        done = subprocess.run([python, "-c", "import tensorflow, keras"], capture_output=True, text=True)
    except OSError as exc:  # no such interpreter
        return f"{python}: {exc.strerror}"
    if done.returncode == 0:
        return None
    return (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]


def write_arrays(folder: Path) -> None:
    """MNIST as digitlab reads and normalises it, channels last as Keras wants it: x (N, 28, 28, 1) float32."""
    import numpy as np

    from digitlab.training.config import recipe_config
    from digitlab.training.data import load_mnist, to_input

    data = recipe_config(RECIPE).data_config()
    for split in ("train", "test"):
        images, labels = load_mnist(split)
        np.save(folder / f"x_{split}.npy", to_input(images, data).permute(0, 2, 3, 1).contiguous().numpy())
        np.save(folder / f"y_{split}.npy", labels.numpy())


def side_by_side(args, folder: str, busy: int, log_dir: str) -> list[Worker]:
    """Fresh workers, started one after the other; then their epochs, interleaved; then their test accuracies."""
    me = [sys.executable, os.path.abspath(__file__), "--epochs", str(args.epochs), "--limit", str(args.limit)]
    commands = {
        f"digitlab {RECIPE}": me + ["--digitlab-worker", RECIPE],
        f"Keras {RECIPE}": [args.keras_python] + me[1:] + ["--keras-worker", folder],
        f"digitlab {RECIPE} --bf16": me + ["--digitlab-worker", RECIPE, "--worker-bf16"],
        "digitlab default": me + ["--digitlab-worker", "default"],
    }
    workers: list[Worker] = []
    try:
        with background_load(busy):
            for name, command in commands.items():
                workers.append(Worker(name, command, log_dir))
            for epoch in range(1, args.epochs + 1):
                for worker in workers:
                    row = worker.epoch()
                    print(f"  {worker.name}, epoch {epoch}: {row['seconds']:.2f} s ({row['conditions']})",
                          file=sys.stderr, flush=True)
            for worker in workers:
                worker.finish()
    finally:
        for worker in workers:
            worker.stop()
    return workers


def steady(epochs: list[dict]) -> float:
    """An epoch's seconds once started: the mean of all but the first (which also builds kernels and caches),
    or the only one."""
    seconds = [row["seconds"] for row in epochs]
    later = seconds[1:] or seconds
    return sum(later) / len(later)


def epochs_table(runs: dict[str, list[Worker]]) -> list[str]:
    lines = ["| machine | run | epoch seconds (each) | test accuracy | threads | load average before each epoch "
             "| % CPU time stolen in each |", "|---|---|---|---|---|---|---|"]
    for condition, workers in runs.items():
        for worker in workers:
            seconds = ", ".join(f"{row['seconds']:.1f}" for row in worker.epochs)
            loads = ", ".join(f"{row['load_before']:.1f}" for row in worker.epochs)
            stolen = ", ".join("?" if row["stolen"] is None else f"{100 * row['stolen']:.1f}" for row in worker.epochs)
            lines.append(f"| {condition} | {worker.name} | {seconds} | {100 * worker.result['test_accuracy']:.2f} % "
                         f"| {worker.ready['threads']} | {loads} | {stolen} |")
    return lines


def ratios_table(runs: dict[str, list[Worker]]) -> list[str]:
    """Steady epochs side by side, and what issue 19's targets ask of them."""
    by = {(condition, worker.name): steady(worker.epochs) for condition, workers in runs.items()
          for worker in workers}
    mine, keras = f"digitlab {RECIPE}", f"Keras {RECIPE}"
    lines = ["| figure | value | target |", "|---|---|---|"]
    for condition in runs:
        for name in (mine, mine + " --bf16"):
            lines.append(f"| {condition}: Keras's epoch / {name}'s | {by[condition, keras] / by[condition, name]:.2f}x"
                         f" | {'>= 1.5x' if condition == 'quiet' else '>= 1.0x'} |")
    if len(runs) == 2:
        for name, target in ((mine, "<= 1.6x"), (mine + " --bf16", "<= 1.6x"), (keras, "-"),
                             ("digitlab default", "-")):
            lines.append(f"| {name}: loaded epoch / quiet | {by['loaded', name] / by['quiet', name]:.2f}x "
                         f"| {target} |")
    return lines


def keras_yardstick(workers: list[Worker], images: int) -> tuple[float, str]:
    """Keras's first two epochs' seconds (scaled up to 60,000 images when the run trained on fewer)."""
    keras = next(worker for worker in workers if worker.name.startswith("Keras"))
    seconds = sum(row["seconds"] for row in keras.epochs[:2]) * (2 / min(2, len(keras.epochs)))
    if images < TRAIN_IMAGES:
        return seconds * TRAIN_IMAGES / images, f"extrapolated from {images:,} images per epoch"
    return seconds, " + ".join(f"{row['seconds']:.1f}" for row in keras.epochs[:2]) + " s"


def time_to_accuracy(args, yardstick: float) -> list[str]:
    """time_to_accuracy.py's runs, variants interleaved per seed, on the machine as it is."""
    from time_to_accuracy import Variant, run_child

    plan = QUICK_TTA_RUNS if args.quick else TTA_RUNS
    results: dict[int, list] = {i: [] for i in range(len(plan))}
    for seed in range(args.runs):
        for i, (recipe, _, options) in enumerate(plan):
            epochs = 1 if args.quick and recipe == "fast_995" else None
            try:
                result = run_child(recipe, seed, Variant(**options), epochs=epochs)
            except RuntimeError as exc:
                result = {"failed": str(exc)}
            results[i].append(result)
            print(f"  {recipe} {Variant(**options).label()}, seed {seed}: "
                  f"{result.get('failed') or result['reached']}", file=sys.stderr, flush=True)
    lines = ["| recipe | variant | target | seconds to it (each run) | / Keras's two epochs | test accuracy at the end "
             "| CPU seconds | load average before; stolen |", "|---|---|---|---|---|---|---|---|"]
    for i, (recipe, threshold, options) in enumerate(plan):
        done = [r for r in results[i] if "failed" not in r]
        failed = [r["failed"] for r in results[i] if "failed" in r]
        times = [r["reached"].get(threshold) for r in done]
        shown = ", ".join("never" if t is None else f"{t:.1f}" for t in times) or "-"
        met = [t for t in times if t is not None]
        ratio = f"{sum(met) / len(met) / yardstick:.2f} (mean; target <= {TARGETS[threshold]:g})" if met else "-"
        final = ", ".join(f"{100 * r['epochs'][-1]['test_accuracy']:.2f}" for r in done) or "-"
        cpu = ", ".join(f"{r['epochs'][-1]['cpu_seconds']:.0f}" for r in done) or "-"
        machine = ", ".join(f"{r['load_before']:.1f}; " + ("?" if r["stolen"] is None else f"{100 * r['stolen']:.1f}%")
                            for r in done)
        label = Variant(**options).label() + (f" (failed: {failed[0]})" if failed else "")
        lines.append(f"| `{recipe}` | {label} | {100 * float(threshold):.1f} % | {shown} | {ratio} | {final} | {cpu} "
                     f"| {machine} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keras-python", help="a Python that can import TensorFlow and Keras (default: this one, "
                                               "when it can)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each run (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="time-to-accuracy runs of each variant (default: 3)")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK_IMAGES:,} images per epoch, "
                                                            "fewer variants, `fast_995` for one epoch, 1 run each")
    parser.add_argument("--limit", type=int, default=0, help="training images per epoch (default: all)")
    parser.add_argument("--no-load", action="store_true", help="the quiet machine only")
    parser.add_argument("--no-tta", action="store_true", help="leave out the time-to-accuracy runs")
    parser.add_argument("--digitlab-worker", metavar="RECIPE", help=argparse.SUPPRESS)
    parser.add_argument("--keras-worker", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--worker-bf16", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.limit, args.runs = args.limit or QUICK_IMAGES, 1

    if args.digitlab_worker:
        return digitlab_worker(args.digitlab_worker, args.epochs, args.limit, args.worker_bf16)
    if args.keras_worker:
        return keras_worker(args.keras_worker, args.epochs, args.limit, batch_size=128, learning_rate=1e-3)

    from digitlab.threads import yield_when_waiting

    yield_when_waiting()  # the parent imports torch to read MNIST
    if args.keras_python is None:
        import importlib.util

        found = importlib.util.find_spec("tensorflow") and importlib.util.find_spec("keras")
        args.keras_python = sys.executable if found else None
    why = "no --keras-python given" if args.keras_python is None else keras_importable(args.keras_python)
    if why:
        print(f"keras_side_by_side: Keras is not importable ({why}); install TensorFlow in a separate environment "
              f"(docs/results.md, 'Beside Keras') and pass its interpreter as --keras-python", file=sys.stderr)
        return

    busy = os.cpu_count() or 1
    images = args.limit or TRAIN_IMAGES
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    runs: dict[str, list[Worker]] = {}
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as log_dir:
        write_arrays(Path(folder))
        for condition in ("quiet",) if args.no_load else ("quiet", "loaded"):
            print(f"{condition}: {conditions()}", file=sys.stderr, flush=True)
            try:
                runs[condition] = side_by_side(args, folder, busy if condition == "loaded" else 0, log_dir)
            except RuntimeError as exc:
                sys.exit(f"keras_side_by_side: {exc}")
    yardstick, how = keras_yardstick(runs["quiet"], images)
    tta = [] if args.no_tta else time_to_accuracy(args, yardstick)

    keras_versions = next(worker.ready["versions"] for worker in runs["quiet"] if "versions" in worker.ready)
    command = " ".join(["python", "benchmarks/keras_side_by_side.py"] + sys.argv[1:])
    print(f"`{command}` ({started}{', a smoke run' if args.quick else ''}):\n")
    print(f"- hardware: {hardware()}; CPU flags: {cpu_flags()}")
    print(f"- versions: {versions(('digitlab', 'torch', 'numpy'))}; {keras_versions}")
    sizes = ", ".join(f"{worker.name} {worker.ready['parameters']:,}" for worker in runs["quiet"])
    print(f"- parameters: {sizes}")
    loaded = f"; \"loaded\": {busy} busy processes (one per CPU) started by the benchmark" if "loaded" in runs else ""
    print(f"- {args.epochs} epoch(s) of {images:,} images per run; `{RECIPE}`: Adam 1e-3, batch 128{loaded}\n")
    print("\n".join(epochs_table(runs)) + "\n")
    print("\n".join(ratios_table(runs)) + "\n")
    if tta:
        print(f"Time to accuracy against Keras's two quiet epochs of `{RECIPE}`: {yardstick:.1f} s ({how}); seconds "
              f"from process start, start-up included; {args.runs} run(s) of each variant, interleaved:\n")
        print("\n".join(tta))


if __name__ == "__main__":
    main()
