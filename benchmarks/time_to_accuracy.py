"""Time to accuracy: wall-clock seconds from process start to a saved model at >= 99.0 % and >= 99.5 % test accuracy.

By default it times the commands a user types, `digitlab train --recipe fast` (99.0 %) and `--recipe fast_995`
(99.5 %), from process start to exit (the model saved, its test accuracy printed), beside the yardstick:
`digitlab train --recipe cnn5x5_dense1000 --epochs 2`, seed 000's recipe (the tutorial network) for two epochs, by
the same command. The three take turns round after round (seed = round), each share is taken within its round, and
the table gives the median share against the targets (<= 0.15x and <= 1x of the yardstick), with the host's CPU,
flags, load average and stolen time. The test set is read only to print the accuracy at the end, as `digitlab
train` always does; nothing is chosen on it.

    python benchmarks/time_to_accuracy.py                        # 3 rounds of the three commands
    python benchmarks/time_to_accuracy.py --runs 5

`--per-epoch` scores the test set after every epoch of one recipe instead, in a harness of the training loop's own
functions (``loop.train_one_epoch``), to see when each threshold falls and to try variants of the recipe:

    python benchmarks/time_to_accuracy.py --per-epoch --recipe fast_995
    python benchmarks/time_to_accuracy.py --per-epoch --device cuda --compile  # GPU: data on the GPU, bf16
    python benchmarks/time_to_accuracy.py --per-epoch --bf16 --batch-size 256  # CPU: bf16 autocast, another batch

On a GPU the whole training set stays on the device, batches are augmented there, and the forward and backward
passes run under bf16 autocast (optionally through torch.compile); on a CPU bf16 autocast, channels-last, the batch
size and torch.compile are each a ``Variant`` of the recipe, which benchmarks/keras_side_by_side.py times side by
side against Keras. docs/results.md says which of these paths were measured.
"""

from __future__ import annotations

import time

START = time.time()  # before torch is imported: the clock covers everything the user waits for

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from contextlib import nullcontext  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from machine import StolenTime, conditions, cpu_flags, hardware, versions  # noqa: E402

THRESHOLDS = (0.990, 0.995)


@dataclass(frozen=True)
class Variant:
    """How a timed run departs from its recipe (the recipe's own settings when left as they are)."""
    bf16: bool | None = None          # bfloat16 autocast (TrainConfig.bf16) on or off; always on on a GPU
    channels_last: bool = True
    batch_size: int | None = None
    compile: bool = False             # torch.compile the model

    def flags(self) -> list[str]:
        """The command-line options that ask a child run for this variant."""
        return ({True: ["--bf16"], False: ["--no-bf16"], None: []}[self.bf16]
                + ([] if self.channels_last else ["--no-channels-last"])
                + (["--batch-size", str(self.batch_size)] if self.batch_size else [])
                + (["--compile"] if self.compile else []))

    def label(self) -> str:
        return " ".join(self.flags()) or "as the recipe says"


def one_run(recipe: str, device_name: str, seed: int, variant: Variant, threads: int, epochs: int | None) -> dict:
    """Train once, scoring the test set after each epoch; the seconds since START at which each threshold fell.

    The epochs are the training loop's own (``loop.train_one_epoch``); what a timed run leaves out is the rest of
    ``loop.train``: checkpoints, validation and progress bars.
    """
    from digitlab.threads import available_cpus, yield_when_waiting

    yield_when_waiting()  # as `digitlab train` does, before torch is imported
    import torch

    from digitlab.training.config import recipe_config
    from digitlab.training.data import data_config_of, load_mnist, to_input
    from digitlab.scores import BATCH
    from digitlab.training.loop import (autocast_for, load_data, resolve_device, step_schedule, steps_per_epoch,
                                        train_one_epoch)
    from digitlab.training.state import build_state

    torch.set_num_threads(threads or min(torch.get_num_threads(), available_cpus()))  # as `digitlab train` does
    cfg = recipe_config(recipe, seed=seed, device=device_name, epochs=epochs, channels_last=variant.channels_last,
                        batch_size=variant.batch_size, bf16=variant.bf16)
    if cfg.validation_split:
        # its schedule and early stopping would answer to a validation this benchmark does not run
        raise SystemExit(f"recipe {recipe!r} validates on held-out images every epoch, which this benchmark does not; "
                         f"time `digitlab train --recipe {recipe}` instead")
    device = resolve_device(cfg.device)
    on_gpu = device.type == "cuda"
    torch.manual_seed(seed)
    train_split, _, nondigits = load_data(cfg, device)
    state = build_state(cfg, device, steps_per_epoch(len(train_split), cfg.batch_size))
    if variant.compile:
        state.forward = torch.compile(state.model)
    scored = state.forward if state.ema is None else state.eval_model  # EMA weights are the ones a run keeps
    test_images, test_labels = load_mnist("test")
    # (10000, 1, 28, 28), normalised as the model's data configuration says
    test_x = to_input(test_images, data_config_of(state.model), device)
    if cfg.channels_last:
        test_x = test_x.contiguous(memory_format=torch.channels_last)
    test_y = test_labels.to(device)
    cfg.bf16 = cfg.bf16 or on_gpu
    autocast = autocast_for(cfg, device)  # what `digitlab train` runs its steps under

    reached: dict[str, float] = {}
    epochs = []
    ready = round(time.time() - START, 2)  # start-up: Python, imports, MNIST, the model and its optimizer
    for epoch in range(1, cfg.epochs + 1):
        row = train_one_epoch(cfg, state, train_split, epoch, nondigits=nondigits, autocast=autocast)
        step_schedule(cfg, state.schedule, row)
        state.eval_model.eval()
        with torch.inference_mode(), (autocast if on_gpu else nullcontext()):  # a CPU run is scored as saved
            correct = sum((scored(test_x[i:i + BATCH]).argmax(1) == test_y[i:i + BATCH]).sum().item()
                          for i in range(0, len(test_y), BATCH))
        accuracy = correct / len(test_y)
        now = time.time() - START
        # CPU seconds of this process (all threads) tell how much work it was, whatever else the machine ran
        epochs.append({"epoch": epoch, "test_accuracy": accuracy, "seconds": round(now, 2),
                       "cpu_seconds": round(time.process_time(), 2)})
        for threshold in THRESHOLDS:
            if accuracy >= threshold and f"{threshold:.3f}" not in reached:
                reached[f"{threshold:.3f}"] = round(now, 2)
        if len(reached) == len(THRESHOLDS):
            break
    return {"recipe": recipe, "device": str(device), "seed": seed, "variant": variant.label(), "bf16": cfg.bf16,
            "batch_size": cfg.batch_size, "reached": reached, "ready_seconds": ready,
            "epochs": epochs, "torch": torch.__version__, "threads": torch.get_num_threads()}


# --- the commands a user types, beside the yardstick ------------------------------------------------------------------

# What the targets are measured against: seed 000's recipe (the tutorial network digitlab reproduces) for two epochs,
# by the same command, in the same run.
YARDSTICK = ("cnn5x5_dense1000", ["--epochs", "2"])
COMMANDS = {"yardstick: cnn5x5_dense1000, 2 epochs": YARDSTICK, "fast (99.0 %)": ("fast", []),
            "fast_995 (99.5 %)": ("fast_995", [])}
TARGETS = {"fast (99.0 %)": (0.15, 0.990), "fast_995 (99.5 %)": (1.0, 0.995)}  # (share of the yardstick, accuracy)
ACCURACY_LINE = re.compile(r"test accuracy (\d+\.\d+)%")


def train_command(recipe: str, extra: list[str], seed: int, folder: Path) -> dict:
    """`digitlab train --recipe RECIPE` from process start to its exit: the saved model and its printed test
    accuracy, as a user waits for them. Wall and CPU seconds (the child's, all threads) and the accuracy."""
    out = folder / f"{recipe}-{seed}-{time.time_ns()}"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "digitlab", "train", "--recipe", recipe, "--seed", str(seed),
                           "--out", str(out), *extra], capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = ACCURACY_LINE.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"digitlab train --recipe {recipe} failed: "
                           f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": wall, "cpu_seconds": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
            "accuracy": float(found.group(1)) / 100}


def commands_side_by_side(rounds: int, log=print) -> dict[str, list[dict]]:
    """``rounds`` rounds of every command in COMMANDS, one after the other (seed = round), so that whatever else
    the machine does falls on all of them alike."""
    results: dict[str, list[dict]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory(prefix="time_to_accuracy-") as folder:
        for seed in range(rounds):
            for name, (recipe, extra) in COMMANDS.items():
                results[name].append(train_command(recipe, extra, seed, Path(folder)))
                row = results[name][-1]
                log(f"round {seed + 1}/{rounds} {name}: {row['seconds']:.1f} s ({row['cpu_seconds']:.1f} CPU s), "
                    f"test accuracy {100 * row['accuracy']:.2f} %  [{conditions()}]")
    return results


def targets_table(results: dict[str, list[dict]]) -> list[str]:
    """Each command's median, and its time as a share of the yardstick's in the same round (the median of those
    shares), against its target; a run that missed its accuracy counts as a miss whatever its time."""
    yardstick = results[next(iter(COMMANDS))]
    lines = ["| command | median s (min-max) | test accuracy per round | / yardstick (median of rounds) | target | met |",
             "|---|---|---|---|---|---|"]
    for name, rows in results.items():
        seconds = [r["seconds"] for r in rows]
        accuracies = ", ".join(f"{100 * r['accuracy']:.2f}" for r in rows)
        share = statistics.median(r["seconds"] / y["seconds"] for r, y in zip(rows, yardstick))
        if name in TARGETS:
            limit, accuracy = TARGETS[name]
            met = share <= limit and all(r["accuracy"] >= accuracy for r in rows)
            target = f"<= {limit:g}x, >= {100 * accuracy:.1f} % every round"
        else:
            met, target = None, "-"
        lines.append(f"| {name} | {statistics.median(seconds):.1f} ({min(seconds):.1f}-{max(seconds):.1f}) | "
                     f"{accuracies} | {share:.2f}x | {target} | {'-' if met is None else 'yes' if met else 'no'} |")
    return lines


def describe_machine(device_name: str) -> str:
    import torch

    from machine import hardware

    if device_name.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return hardware()


def run_child(recipe: str, seed: int, variant: Variant = Variant(), device: str = "cpu", threads: int = 0,
              epochs: int | None = None) -> dict:
    """One timed run in a fresh Python process (its clock starts with the process): ``one_run``'s result, with the
    load average before it and the CPU time the host stole while it ran. RuntimeError, with the child's last line
    of errors, when the run fails."""
    from machine import StolenTime

    child = [sys.executable, __file__, "--child", str(seed), "--recipe", recipe, "--device", device,
             "--threads", str(threads)] + variant.flags() + (["--epochs", str(epochs)] if epochs else [])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with StolenTime() as stolen:
        done = subprocess.run(child, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{recipe} seed {seed} ({variant.label()}) failed: "
                           f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result | {"load_before": round(load, 2), "stolen": stolen.fraction}


def describe_run(result: dict) -> str:
    """One run in a line: when each threshold fell, and the accuracy and clock after every epoch."""
    curve = [(round(100 * e["test_accuracy"], 2), e["seconds"], e["cpu_seconds"]) for e in result["epochs"]]
    reached = ", ".join(f">= {100 * float(k):.1f}% at {v:.1f} s" for k, v in result["reached"].items())
    stolen = "unknown" if result["stolen"] is None else f"{100 * result['stolen']:.1f}%"
    return (f"{reached or 'no threshold reached'}  (start-up {result['ready_seconds']:.1f} s; (test %, wall s, CPU s) "
            f"per epoch: {curve}; load average before: {result['load_before']:.2f}; stolen: {stolen})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes, seeds 0, 1, ...")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (worth it on a GPU)")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction,
                        help="bfloat16 autocast on the CPU on or off (default: the recipe's; always on on a GPU)")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                        help="keep the default memory format")
    parser.add_argument("--batch-size", type=int, help="instead of the recipe's")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="at most this many epochs (default: the recipe's)")
    parser.add_argument("--per-epoch", action="store_true",
                        help="score the test set after every epoch of --recipe (with the variant options) instead "
                             "of timing the commands beside the yardstick")
    parser.add_argument("--child", type=int, metavar="SEED", help=argparse.SUPPRESS)
    args = parser.parse_args()
    variant = Variant(args.bf16, args.channels_last, args.batch_size, args.compile)

    if args.child is not None:  # one measured run, in its own process, reported as one JSON line
        print(json.dumps(one_run(args.recipe, args.device, args.child, variant, args.threads, args.epochs)))
        return
    if not args.per_epoch:
        print(f"{hardware()}; CPU flags: {cpu_flags()}\n{versions()}\nbefore: {conditions()}", flush=True)
        try:
            with StolenTime() as stolen:
                results = commands_side_by_side(args.runs, log=lambda line: print(line, flush=True))
        except RuntimeError as exc:
            sys.exit(f"time_to_accuracy: {exc}")
        print(f"after: {conditions(stolen)}")
        print("\n".join(targets_table(results)))
        return

    results = []
    for seed in range(args.runs):
        try:
            results.append(run_child(args.recipe, seed, variant, args.device, args.threads, args.epochs))
        except RuntimeError as exc:
            sys.exit(f"time_to_accuracy: {exc}")
        print(f"seed {seed}: {describe_run(results[-1])}", flush=True)

    print(f"\n{args.recipe} ({variant.label()}) on {describe_machine(args.device)}, torch {results[0]['torch']}, "
          f"{results[0]['threads']} threads, {len(results)} runs")
    for threshold in THRESHOLDS:
        key = f"{threshold:.3f}"
        times = [r["reached"][key] for r in results if key in r["reached"]]
        missed = len(results) - len(times)
        if times:
            mean = sum(times) / len(times)
            print(f"  >= {100 * threshold:.1f}%: mean {mean:.1f} s, min {min(times):.1f} s, max {max(times):.1f} s"
                  + (f" ({missed} runs never reached it)" if missed else ""))
        else:
            print(f"  >= {100 * threshold:.1f}%: not reached in any run")


if __name__ == "__main__":
    main()
