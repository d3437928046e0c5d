"""rtrl.bench.child: a benchmark script's `rtrl` child stops when the script is stopped or killed."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from conftest import children, running
from rtrl.bench.child import check_child, run_child

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

# a child that says it started, then counts the SIGINTs it gets for a second after the first, and exits 130
CHILD = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path
    log = Path(sys.argv[1])
    got = []
    signal.signal(signal.SIGINT, lambda s, f: got.append(s))
    log.write_text("started")
    while not got:
        time.sleep(0.02)
    time.sleep(1.0)
    log.write_text(f"SIGINT x{len(got)}")
    sys.exit(130)
""")

# a benchmark script: two children in turn through run_child (the second must never start after a stop)
PARENT = textwrap.dedent("""
    import sys
    from rtrl.bench.child import run_child, script_main
    child, log = sys.argv[1], sys.argv[2]
    def main():
        for k in (1, 2):
            print("exit", run_child([sys.executable, child, f"{log}.{k}"]), flush=True)
        return 0
    sys.exit(script_main(main))
""")


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def start_parent(tmp_path: Path, new_session: bool = False) -> tuple[subprocess.Popen, Path]:
    (tmp_path / "child.py").write_text(CHILD)
    (tmp_path / "parent.py").write_text(PARENT)
    log = tmp_path / "log"
    proc = subprocess.Popen([sys.executable, str(tmp_path / "parent.py"), str(tmp_path / "child.py"), str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=new_session)
    first = Path(f"{log}.1")
    wait_for(lambda: first.exists() and first.read_text() == "started", 30, "the child did not start")
    return proc, first


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_script_stops_its_child_once_and_does_not_go_on(tmp_path, stop):
    proc, first = start_parent(tmp_path)
    try:
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert first.read_text() == "SIGINT x1"           # the child was told, once, and finished its stop
    assert proc.returncode == 128 + stop, err
    assert "Traceback" not in err and "run the same command to go on" in err
    assert not Path(f"{tmp_path / 'log'}.2").exists()  # the script did not start its next run
    assert out == ""


def test_ctrl_c_in_a_terminal_reaches_the_child_once(tmp_path):
    """A terminal's Ctrl-C goes to the whole foreground process group. The child runs in a session of its
    own, so it gets the parent's one SIGINT, not a second one of its own that could cut its checkpoint short."""
    proc, first = start_parent(tmp_path, new_session=True)
    try:
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert first.read_text() == "SIGINT x1", err
    assert proc.returncode == 130


def test_a_script_killed_outright_still_stops_its_child(tmp_path):
    proc, first = start_parent(tmp_path)
    proc.kill()
    proc.wait(timeout=10)
    wait_for(lambda: first.read_text() != "started", 30, "the orphaned child got no SIGINT")
    assert first.read_text() == "SIGINT x1"


def test_a_failed_child_ends_the_script_with_one_line_not_a_traceback(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        import sys
        from rtrl.bench.child import check_child, script_main
        sys.exit(script_main(lambda: check_child([sys.executable, "-c", "import sys; sys.exit(2)"]) or 0))
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "exited with 2 (its message is above)" in done.stderr


def test_exit_codes_pass_through(tmp_path):
    assert run_child([sys.executable, "-c", "import sys; sys.exit(3)"]) == 3
    check_child([sys.executable, "-c", "pass"])
    with pytest.raises(subprocess.CalledProcessError) as failed:
        check_child([sys.executable, "-c", "import sys; sys.exit(4)"])
    assert failed.value.returncode == 4


@pytest.mark.slow
def test_rtrl_train_under_a_killed_script_checkpoints_and_ends(tmp_path):
    """The real child: `rtrl train` started through run_child by a script that is then killed outright ends
    with a checkpoint (SIGINT from the kernel) instead of training on as an orphan."""
    out = tmp_path / "run"
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from rtrl.bench.child import run_child
        run_child([sys.executable, "-m", "rtrl", "train", "--env", "memory:delayed_recall?delay=4",
                   "--total-steps", "100000000", "--hidden-size", "4", "--batch-size", "2", "--envs-per-actor", "2",
                   "--unroll-length", "4", "--log-interval", "0.2", "--no-progress", "--no-plot",
                   "--out", {str(out)!r}])
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        metrics = out / "metrics.csv"
        wait_for(lambda: metrics.exists() and len(metrics.read_text().splitlines()) > 1, 120, "no metrics row")
        train = children(proc.pid)
        assert len(train) == 1
        proc.kill()
        proc.wait(timeout=10)
        wait_for(lambda: not running(train), 90, "the orphaned `rtrl train` did not stop")
    finally:
        proc.kill()
    assert torch.load(out / "checkpoint.pt", weights_only=False)["steps"] > 0
