"""The handler of signals while a command starts (rtrl.cli.early): the command says it was stopped; an actor
process that the command spawned, stopped while it imports the command's modules, exits without a word."""
import subprocess
import sys
from pathlib import Path

# early.py is loaded from its file, as the module it is (it imports nothing heavy), so that these processes start
# in a fraction of a second: importing it as rtrl.cli.early would import the commands (torch...) too
EARLY = Path(__file__).resolve().parents[2] / "rtrl" / "cli" / "early.py"

# a process that takes itself for the rtrl command, installs the handler, and is sent SIGTERM while "starting";
# with "child", the same happens inside a process it spawns with multiprocessing (as the local backend's actors)
SCRIPT = """
import importlib.util, os, signal, sys
import multiprocessing as mp
sys.argv = ["rtrl"]
spec = importlib.util.spec_from_file_location("early", {early!r})
early = importlib.util.module_from_spec(spec)
spec.loader.exec_module(early)

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
    script.write_text(SCRIPT.replace("{early!r}", repr(str(EARLY))))
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120)


def test_the_command_stopped_while_starting_says_so_and_exits_143(tmp_path):
    done = _run(tmp_path)
    assert done.returncode == 143 and done.stderr == "rtrl: terminated while starting; nothing was run\n", done


def test_a_spawned_actor_stopped_while_starting_exits_143_without_a_word(tmp_path):
    done = _run(tmp_path, "child")
    assert done.returncode == 0 and done.stdout == "child exit code 143\n", done
    assert "while starting" not in done.stderr, done.stderr
