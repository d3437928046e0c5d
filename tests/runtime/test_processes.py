"""Training in processes: the local backend's actors, signals, and what happens when an actor or the
learner dies. Each test starts processes and waits on them (the ``slow`` marker)."""
import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import MEMORY, children, running, small_config
from rtrl.cli import main
from rtrl.runtime.backends import ActorError
from rtrl.runtime.checkpoints import load_checkpoint
from rtrl.runtime.train import train

pytestmark = pytest.mark.slow


def test_local_multiprocess_backend_feeds_whole_rollouts_with_their_state(tmp_path, monkeypatch):
    """Two actor processes fill the shared rollouts; every batch is whole rollouts with the state before step 0."""
    from rtrl.runtime.backends import local
    seen = []
    real_collate = local.collate

    def recording_collate(rollouts):
        batch, episodes = real_collate(rollouts)
        seen.append((batch.obs.shape[1], batch.state.c.shape[0], batch.state.sensitivity["weight_x"].abs().sum()))
        return batch, episodes

    monkeypatch.setattr(local, "collate", recording_collate)
    cfg = small_config(num_actors=2, total_steps=200)
    summary = train(cfg, tmp_path, progress=False)
    assert summary["finished"] and summary["steps"] == 200 and summary["episodes_in_window"] > 0
    assert len(seen) == 10 and all(b == s == cfg.batch_size for b, s, _ in seen)
    assert seen[-1][2] > 0   # later rollouts carry non-zero sensitivities from the actors


def _wait_for_metrics(run_dir, proc, rows_before=0, timeout=90.0):
    """Wait until metrics.csv has a new row (header + rows_before + 1 lines)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = run_dir / "metrics.csv"
        if path.exists() and len(path.read_text().splitlines()) >= rows_before + 2:
            return
        assert proc.poll() is None, "training ended early"
        time.sleep(0.5)
    raise AssertionError("no metrics row within the timeout")


def test_sigterm_checkpoints_and_a_killed_learner_takes_its_actors_along(tmp_path):
    """SIGTERM behaves like Ctrl-C (a checkpoint) and exits 143; after SIGKILL the actor processes exit by themselves."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "rtrl", "train", "--env", MEMORY, "--total-steps", "100000000", "--unroll-length", "5",
           "--batch-size", "4", "--envs-per-actor", "2", "--hidden-size", "8", "--stem", "identity",
           "--num-actors", "2", "--log-interval", "0.2", "--out", str(run_dir), "--no-progress", "--no-plot"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_metrics(run_dir, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
    finally:
        proc.kill()
    assert load_checkpoint(run_dir / "checkpoint.pt")["steps"] > 0
    rows = len((run_dir / "metrics.csv").read_text().splitlines()) - 1
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # resumes
    try:
        _wait_for_metrics(run_dir, proc, rows_before=rows)
        actors = children(proc.pid)
        assert actors, "the local backend should run actor processes"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in actors):
        time.sleep(0.5)
    assert not running(actors), f"orphaned actor processes {running(actors)}"


def test_an_actor_failure_ends_the_run_with_its_traceback(tmp_path, capsys):
    """An env id registered only in this process: every spawned actor fails to make it. The learner
    replaces the actor --max-actor-restarts times, then reports its error in one line (the traceback in a
    file), checkpoints and exits 1."""
    import gymnasium as gym
    gym.register("RtrlParentOnly-v0", entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv")
    try:
        code = main(["train", "--env", "gym:RtrlParentOnly-v0", "--num-actors", "1", "--envs-per-actor", "2",
                     "--batch-size", "2", "--unroll-length", "5", "--hidden-size", "8", "--total-steps", "100",
                     "--max-actor-restarts", "1", "--out", str(tmp_path / "run"), "--no-progress"])
    finally:
        gym.registry.pop("RtrlParentOnly-v0")
    err = capsys.readouterr().err
    assert code == 1, err
    assert ("rtrl train: error: actor 0 failed 2 times in a row, more than max_actor_restarts=1 allows; its last "
            "failure: ValueError: unknown Gymnasium env 'RtrlParentOnly-v0'") in err
    assert "spawned" in err and "Traceback" not in err
    trace = tmp_path / "run" / "rtrl-train-error.txt"
    assert f"(traceback: {trace})" in err and "Traceback" in trace.read_text()
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["actor_restarts"] == 1


def kill_an_actor_process(after_seconds: float = 1.0) -> threading.Thread:
    """A thread that SIGKILLs one spawned child process of this one ``after_seconds`` after it appears."""
    def kill():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for pid in children(os.getpid()):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"spawn_main" in cmdline:
                    time.sleep(after_seconds)
                    os.kill(pid, signal.SIGKILL)
                    return
            time.sleep(0.2)

    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    return killer


def test_a_killed_actor_is_replaced_and_the_run_finishes(tmp_path):
    """SIGKILL one actor process mid-run: a fresh one takes its slots, the run reaches its step count."""
    killer = kill_an_actor_process()
    cfg = small_config(num_actors=2, total_steps=4_000, log_interval=0.2)
    summary = train(cfg, tmp_path, progress=False)
    killer.join(timeout=5)
    assert summary["finished"] and summary["steps"] == 4_000
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert int(rows[-1]["actor_restarts"]) == 1


def test_with_no_restarts_allowed_a_killed_actor_ends_the_run(tmp_path):
    """--max-actor-restarts 0: the learner notices the dead actor (no report) and ends the run."""
    killer = kill_an_actor_process()
    cfg = small_config(num_actors=2, total_steps=10_000_000, max_actor_restarts=0)
    with pytest.raises(ActorError, match=r"failed once, more than max_actor_restarts=0 allows; its last failure: "
                                         r"its process \d+ died without a report \(exit code -9\)"):
        train(cfg, tmp_path, progress=False)
    killer.join(timeout=5)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["steps"] >= 0   # the run ends with a checkpoint


def test_an_actor_whose_learner_died_before_it_started_exits_at_once():
    """The watchdog compares against the learner's pid handed over at spawn: an actor re-parented
    while still importing (its learner killed early) must not adopt its new parent as the learner."""
    code = ("from rtrl.runtime.actor import exit_with_parent; import os, time; "
            "exit_with_parent(os.getppid()); print('watched', flush=True); "
            "exit_with_parent(os.getppid() + 100000); time.sleep(5); print('still alive')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == "watched\n", (result.returncode, result.stdout, result.stderr)


def _training(run_dir, total_steps, *extra) -> list[str]:
    """A tiny run with an actor process, writing a metrics row every 0.05 s and a checkpoint every 0.02 s
    (so that a kill often lands while one is being written)."""
    return [sys.executable, "-m", "rtrl", "train", "--env", MEMORY, "--total-steps", str(total_steps),
            "--unroll-length", "5", "--batch-size", "4", "--envs-per-actor", "2", "--hidden-size", "8",
            "--stem", "identity", "--num-actors", "1", "--log-interval", "0.05", "--checkpoint-interval", "0.02",
            "--out", str(run_dir), "--no-progress", "--no-plot", *extra]


def _checkpoint_steps(run_dir) -> int:
    try:
        return load_checkpoint(run_dir / "checkpoint.pt")["steps"]
    except (FileNotFoundError, ValueError):
        return -1


def _wait_until(condition, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "training ended early"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _gone(pids, timeout=20.0) -> list[int]:
    """The pids among ``pids`` still alive (not zombies) after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for pid in pids:
            try:
                if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.append(pid)
            except OSError:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def test_a_learner_killed_at_any_moment_resumes_consistently(tmp_path, capsys):
    """SIGKILL the learner while it starts up, right after its first checkpoint and in the middle of a run
    that writes checkpoints back to back. Each time: no actor outlives it, what it left loads, a second run
    on the directory is refused with the first one's pid while it lives and the stale lock does not block
    the rerun; at the end metrics.csv and TensorBoard hold each step once, consistent with the checkpoints."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run_dir = tmp_path / "run"
    moments = [("starting up", lambda before: (run_dir / "run.lock").exists(), 0.0),
               ("after its first checkpoint", lambda before: _checkpoint_steps(run_dir) >= 0, 0.0),
               ("mid-run", lambda before: _checkpoint_steps(run_dir) >= before + 60, 0.3)]
    for name, ready, delay in moments:
        before = _checkpoint_steps(run_dir)
        proc = subprocess.Popen(_training(run_dir, 1_000_000), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_until(lambda: ready(before), proc)
            if name == "after its first checkpoint":
                code = main(_training(run_dir, 1_000_000)[3:])   # the same command, in this process
                assert code == 2 and f"is in use by another run (pid {proc.pid}" in capsys.readouterr().err
            time.sleep(delay)
            actors = children(proc.pid)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            proc.kill()
        assert not _gone(actors), f"orphaned actors after a kill {name}"
        if (run_dir / "checkpoint.pt").exists():
            assert _checkpoint_steps(run_dir) >= max(before, 0), name   # loadable, never older than before
    assert _checkpoint_steps(run_dir) >= 60
    final = _checkpoint_steps(run_dir) + 100
    result = subprocess.run(_training(run_dir, final, "--force"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert _checkpoint_steps(run_dir) == final
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(set(steps)) and steps[-1] == final
    assert all(int(r["updates"]) * 20 == int(r["step"]) for r in rows)   # counters restored with the weights
    assert all(None not in r.values() and r["sps"] for r in rows)
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("updates")] == steps
    assert sorted(os.listdir(run_dir)) == ["checkpoint.pt", "config.json", "metrics.csv", "run.json", "tensorboard"]
