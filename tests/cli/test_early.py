"""The handler of signals while a command starts (rtrl.cli.early): the command says it was stopped; an actor
process that the command spawned, stopped while it imports the command's modules, exits without a word."""
import subprocess
import sys

# a process that takes itself for the rtrl command, installs the handler, and is sent SIGTERM while "starting";
# with "child", the same happens inside a process it spawns with multiprocessing (as the local backend's actors)
SCRIPT = """
import os, signal, sys
import multiprocessing as mp
sys.argv = ["rtrl"]
from rtrl.cli import early

def starting():
    early.install()
    os.kill(os.getpid(), signal.SIGTERM)
    signal.pause()

if __name__ == "__main__":
    if sys.orig_argv[-1] == "child":
        child = mp.get_context("spawn").Process(target=starting)
        child.start()
        child.join()
        print("child exit code", child.exitcode, flush=True)
    else:
        starting()
"""


def _run(tmp_path, *args):
    script = tmp_path / "starting.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120)


def test_the_command_stopped_while_starting_says_so_and_exits_143(tmp_path):
    done = _run(tmp_path)
    assert done.returncode == 143 and done.stderr == "rtrl: terminated while starting; nothing was run\n", done


def test_a_spawned_actor_stopped_while_starting_exits_143_without_a_word(tmp_path):
    done = _run(tmp_path, "child")
    assert done.returncode == 0 and done.stdout == "child exit code 143\n", done
    assert "while starting" not in done.stderr, done.stderr
