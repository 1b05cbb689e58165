"""Time to accuracy: wall-clock seconds from process start to the first epoch at >= 99.0% and >= 99.5% test accuracy.

A speed benchmark, not model selection: the test set is scored after every epoch only to stop the clock. Each run is
a fresh Python process, so the time includes starting Python, importing torch and reading MNIST from disk.

    python benchmarks/time_to_accuracy.py                        # CPU, the 'fast' recipe (99.0%), 3 runs
    python benchmarks/time_to_accuracy.py --recipe fast_995      # the road to 99.5%
    python benchmarks/time_to_accuracy.py --device cuda --compile  # GPU: data on the GPU, channels-last, bf16

Each epoch is the training loop's own (``loop.train_one_epoch``). On a GPU the whole training set stays on the
device, batches are augmented there, and the forward and backward passes run under bf16 autocast (optionally through
torch.compile); docs/results.md says which of these paths were measured.
"""

from __future__ import annotations

import time

START = time.time()  # before torch is imported: the clock covers everything the user waits for

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from contextlib import nullcontext  # noqa: E402

THRESHOLDS = (0.990, 0.995)


def one_run(recipe: str, device_name: str, seed: int, use_compile: bool, threads: int, epochs: int | None) -> dict:
    """Train once, scoring the test set after each epoch; the seconds since START at which each threshold fell.

    The epochs are the training loop's own (``loop.train_one_epoch``); what a timed run leaves out is the rest of
    ``loop.train``: checkpoints, validation and progress bars.
    """
    import torch

    from digitlab.training.config import recipe_config
    from digitlab.training.data import data_config_of, load_mnist, to_input
    from digitlab.training.evaluate import BATCH
    from digitlab.training.loop import (build_state, load_data, resolve_device, step_schedule, steps_per_epoch,
                                        train_one_epoch)

    if threads:
        torch.set_num_threads(threads)
    cfg = recipe_config(recipe, seed=seed, device=device_name, epochs=epochs)
    if cfg.validation_split:
        # its schedule and early stopping would answer to a validation this benchmark does not run
        raise SystemExit(f"recipe {recipe!r} validates on held-out images every epoch, which this benchmark does not; "
                         f"time `digitlab train --recipe {recipe}` instead")
    device = resolve_device(cfg.device)
    on_gpu = device.type == "cuda"
    torch.manual_seed(seed)
    train_split, _, nondigits = load_data(cfg, device)
    state = build_state(cfg, device, steps_per_epoch(len(train_split), cfg.batch_size))
    if use_compile:
        state.forward = torch.compile(state.model)
    scored = state.forward if state.ema is None else state.eval_model  # EMA weights are the ones a run keeps
    test_images, test_labels = load_mnist("test")
    # (10000, 1, 28, 28), normalised as the model's data configuration says
    test_x = to_input(test_images, data_config_of(state.model), device).contiguous(memory_format=torch.channels_last)
    test_y = test_labels.to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_gpu else nullcontext()

    reached: dict[str, float] = {}
    epochs = []
    ready = round(time.time() - START, 2)  # start-up: Python, imports, MNIST, the model and its optimizer
    for epoch in range(1, cfg.epochs + 1):
        row = train_one_epoch(cfg, state, train_split, epoch, nondigits=nondigits, autocast=autocast)
        step_schedule(cfg, state.schedule, row)
        state.eval_model.eval()
        with torch.inference_mode(), autocast:
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
    return {"recipe": recipe, "device": str(device), "seed": seed, "compile": use_compile, "reached": reached,
            "ready_seconds": ready,
            "epochs": epochs, "torch": torch.__version__, "threads": torch.get_num_threads()}


def describe_machine(device_name: str) -> str:
    import torch

    from machine import hardware

    if device_name.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return hardware()


def main() -> None:
    from machine import StolenTime

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes, seeds 0, 1, ...")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (worth it on a GPU)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="at most this many epochs (default: the recipe's)")
    parser.add_argument("--child", type=int, metavar="SEED", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child is not None:  # one measured run, in its own process, reported as one JSON line
        print(json.dumps(one_run(args.recipe, args.device, args.child, args.compile, args.threads, args.epochs)))
        return

    results = []
    for seed in range(args.runs):
        child = [sys.executable, __file__, "--child", str(seed), "--recipe", args.recipe, "--device", args.device,
                 "--threads", str(args.threads)] + (["--compile"] if args.compile else [])
        child += ["--epochs", str(args.epochs)] if args.epochs else []
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        with StolenTime() as stolen:
            done = subprocess.run(child, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"time_to_accuracy: run {seed} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["load_before"] = round(load, 2)
        results.append(result)
        curve = [(round(100 * e["test_accuracy"], 2), e["seconds"], e["cpu_seconds"]) for e in result["epochs"]]
        reached = ", ".join(f">= {100 * float(k):.1f}% at {v:.1f} s" for k, v in result["reached"].items())
        print(f"seed {seed}: {reached or 'no threshold reached'}  (start-up {result['ready_seconds']:.1f} s; "
              f"(test %, wall s, CPU s) per epoch: {curve}; load average before: {load:.2f}; {stolen})", flush=True)

    print(f"\n{args.recipe} on {describe_machine(args.device)}, torch {results[0]['torch']}, "
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
