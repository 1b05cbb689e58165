"""collector: the garbage collector paused while a job imports, and as it was after; everything frozen at exit."""

import gc
import subprocess
import sys

from digitlab.collector import imports_at_once


def test_the_collector_is_paused_for_the_imports_and_runs_again_after():
    assert gc.isenabled()
    with imports_at_once():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_the_caller_turned_off_stays_off_and_an_error_still_restores_it():
    gc.disable()
    try:
        with imports_at_once():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
    try:
        with imports_at_once():
            raise KeyError("a failed import")
    except KeyError:
        pass
    assert gc.isenabled()


def test_the_command_leaves_its_objects_frozen_only_in_its_own_process():
    # run() is the process's entry point: after it, every object is out of the collector's reach; main() alone, which
    # a program may call as a library, leaves the caller's collector as it was
    script = ("import gc, sys; from digitlab.cli import main, run; main(['recipes']); a = gc.get_freeze_count(); "
              "sys.argv = ['digitlab', 'recipes']; run(); print(a, gc.get_freeze_count() > 1000, gc.isenabled())")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-3:] == ["0", "True", "True"]
