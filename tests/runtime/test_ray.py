"""The Ray backend on a Ray started here (2 CPUs, no dashboard, shut down after the module): its
rollouts keep the local backend's invariants, the learner's gradient from them is the full-history
one, weights reach the actors, failed actors are replaced, and runs started from the command line
stop cleanly and leave no Ray process behind. Each test starts Ray actors (the ``slow`` marker)."""
import copy
import csv
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import conftest
from conftest import (MEMORY, as_double, bptt_gradients, check_rollout_invariants, descendants, register_test_envs,
                      rollout_loss, running, skip_module_without, small_config)
from rtrl.envs import EnvSpec
from rtrl.runtime.backends import ActorError, RayBackend
from rtrl.runtime.checkpoints import load_checkpoint
from rtrl.runtime.config import build_agent
from rtrl.runtime.experience import Experience
from rtrl.runtime.learners import ImpalaLearner
from rtrl.runtime.train import train

pytestmark = [pytest.mark.slow, pytest.mark.ray]
skip_module_without("ray")
import ray  # noqa: E402  (after the guard: without Ray this module is skipped, not an error)
from ray import cloudpickle  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def ray_config(**overrides):
    """small_config on the Ray backend: one actor, one rollout per batch unless overridden."""
    return small_config(**{"backend": "ray", "num_actors": 1, "batch_size": 2, **overrides})


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    """One Ray for the module; its workers register the test envs of conftest (shipped by value), and so
    does this process (the learner probes the env)."""
    before = descendants(os.getpid())
    register_test_envs()
    cloudpickle.register_pickle_by_value(conftest)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
             runtime_env={"worker_process_setup_hook": register_test_envs})
    yield
    ray.shutdown()
    cloudpickle.unregister_pickle_by_value(conftest)
    assert_all_gone(descendants(os.getpid()) - before)


def assert_all_gone(pids, grace: float = 15.0) -> None:
    deadline = time.monotonic() + grace
    while running(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = running(pids)
    assert not left, "left running: " + "; ".join(Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")
                                                  .decode(errors="replace")[:120] for p in left)


@pytest.mark.parametrize("core, layers", [("rtrl-elstm", 1), ("lstm", 1), ("rtrl-elstm", 2)])
def test_ray_rollouts_keep_the_rollout_invariants(core, layers):
    """Also for two eLSTM layers with exact RTRL: their state (per-layer and cross-layer sensitivities)
    travels through the object store as the single layer's does."""
    cfg = ray_config(core=core, env="memory:delayed_recall?cues=2&delay=3", num_layers=layers)
    spec = EnvSpec.probe(cfg.env, {})
    model = build_agent(cfg, spec)
    backend = RayBackend(cfg, spec, model)
    try:
        batches = [backend.next_batch()[0] for _ in range(4)]
    finally:
        backend.close()
    assert all(torch.equal(b.version, torch.zeros(2, dtype=torch.int64)) for b in batches)
    check_rollout_invariants(model, batches, core)
    if core == "rtrl-elstm" and layers == 1:
        assert batches[-1].state.sensitivity["weight_x"].abs().sum() > 0
    if layers == 2:
        assert batches[-1].state.cross and all(block.abs().sum() > 0 for block in batches[-1].state.cross.values())


def test_learner_gradient_from_ray_rollouts_equals_full_history_bptt():
    """A float64 learner updates four times on Ray rollouts (lr 1e-30: the weights stay put, their
    versions advance). Σ of its gradients, from the (c, S) the actors shipped, equals BPTT through all
    rollouts (float64) to the actors' float32 precision; a float64 replay of the same history, to 1e-9."""
    cfg = ray_config(lr=1e-30, grad_norm_clip=1e30)
    T = cfg.unroll_length
    spec = EnvSpec.probe(cfg.env, {})
    torch.manual_seed(5)
    model = build_agent(cfg, spec).double()
    model.core.weight_c.data.normal_(0, 0.5)   # a recurrence that matters
    initial = copy.deepcopy(model.state_dict())
    learner, backend = ImpalaLearner(model, cfg), RayBackend(cfg, spec, model)
    summed, batches = {}, []
    try:
        for update in range(4):
            batch, _ = backend.next_batch()
            batch = as_double(batch)
            learner.update(Experience(batch, batch.done.numel()), update * cfg.steps_per_update)
            backend.publish(model)
            batches.append(batch)
            for name, p in model.named_parameters():
                summed[name] = summed.get(name, 0) + p.grad
    finally:
        backend.close()
    assert max(int(b.version.max()) for b in batches) >= 1   # new versions reached the actor
    assert all(torch.allclose(model.state_dict()[k], v, rtol=0, atol=1e-20) for k, v in initial.items())
    bptt_agent = build_agent(small_config(core="tbptt-elstm"), spec).double()
    bptt_agent.load_state_dict(initial)
    full = bptt_gradients(bptt_agent, batches, cfg)
    compared = [name for name in summed if not name.startswith("stem.")]   # the stem: within-rollout only
    assert len(compared) == 9
    for name in compared:
        assert (summed[name] - full[name]).abs().max() <= 1e-5 * full[name].abs().max(), name
    truncated = bptt_gradients(bptt_agent, batches, cfg, detach_between_rollouts=True)
    assert (truncated["core.weight_x"] - full["core.weight_x"]).abs().max() > 1e-3 * full["core.weight_x"].abs().max()
    # the float64 state carried through the same rollouts gives the same gradient to 1e-9
    model.load_state_dict(initial)
    model.zero_grad()
    state = model.initial_state(cfg.envs_per_actor)
    for batch in batches:
        rollout_loss(model.outputs(batch.obs, batch.reward, batch.done, state), batch, cfg).backward()
        with torch.no_grad():
            state = model.advance(model.core_input(batch.obs[:T], batch.reward[:T], batch.done[:T]),
                                  state.map(torch.clone), batch.done[:T])
    for name in compared:
        p = dict(model.named_parameters())[name]
        assert (p.grad - full[name]).abs().max() <= 1e-9 * full[name].abs().max(), name


class RecordingBackend(RayBackend):
    """Keeps each batch with the learner's version at its arrival, and a copy of each weight version."""

    def __init__(self, cfg, spec, model):
        self.seen, self.weights = [], {0: copy.deepcopy(model.state_dict())}
        super().__init__(cfg, spec, model)

    def next_batch(self):
        batch, episodes = super().next_batch()
        self.seen.append((self.version, batch))
        return batch, episodes

    def publish(self, model):
        super().publish(model)
        self.weights[self.version] = copy.deepcopy(model.state_dict())


@pytest.mark.parametrize("interval", [1, 3])
def test_weights_reach_the_actors_and_lag_stays_small_in_lockstep(tmp_path, interval):
    """One actor, one request in flight: each rollout acts with the newest weights sent before it began,
    so the lag is 0 or 1 (plus up to interval - 1 updates not yet sent). Where an episode starts
    inside a rollout, the logits depend on the weights alone: they match the recorded version's."""
    cfg = ray_config(env="memory:delayed_recall?cues=2&delay=1", rollouts_in_flight=1, total_steps=300, lr=0.05,
                     broadcast_interval=interval, log_interval=1000.0)
    spec = EnvSpec.probe(cfg.env, {})
    backends = []
    train(cfg, tmp_path, backend_factory=lambda *a: backends.append(RecordingBackend(*a)) or backends[-1],
          progress=False)
    (backend,) = backends
    versions = [int(batch.version[0]) for _, batch in backend.seen]
    lags = [learner - version for (learner, _), version in zip(backend.seen, versions)]
    assert all(batch.version.unique().numel() == 1 for _, batch in backend.seen)
    assert versions == sorted(versions) and versions[-1] >= 12 and all(v % interval == 0 for v in versions)
    assert set(lags) <= set(range(interval + 1)) and lags[0] == 0
    with open(tmp_path / "metrics.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["policy_lag"]) == pytest.approx(sum(lags) / len(lags))
    model, discriminated = build_agent(cfg, spec), 0
    for (_, batch), version in zip(backend.seen, versions):
        starts = batch.done.clone()
        starts[0] = False   # step 0 repeats the previous rollout's last step (older weights)
        t, e = starts.nonzero(as_tuple=True)
        assert len(t) > 0
        logits = {}
        for v in {version, max(version - interval, 0)}:
            model.load_state_dict(backend.weights[v])
            with torch.no_grad():
                out, _ = model(batch.obs[t, e][None], batch.reward[t, e][None], batch.done[t, e][None],
                               model.step_state(model.initial_state(len(t))))
            logits[v] = out.policy_logits[0]
        torch.testing.assert_close(batch.policy_logits[t, e], logits[version], rtol=0, atol=1e-5)
        discriminated += (logits[version] - logits[max(version - interval, 0)]).abs().max() > 1e-3
    assert discriminated >= 5   # the versions differ enough for the check to tell them apart


def test_an_actor_killed_mid_run_is_replaced_and_the_run_finishes(tmp_path):
    class KillingBackend(RayBackend):
        batches = 0

        def next_batch(self):
            KillingBackend.batches += 1
            if KillingBackend.batches == 3:
                ray.kill(self.actors[0])
            return super().next_batch()

    cfg = ray_config(num_actors=2, batch_size=4, total_steps=600, log_interval=0.05)
    summary = train(cfg, tmp_path, backend_factory=KillingBackend, progress=False)
    assert summary["finished"] and summary["steps"] == 600
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert int(rows[-1]["actor_restarts"]) >= 1 and int(rows[-1]["step"]) == 600


def test_an_env_that_always_raises_ends_the_run_with_its_traceback_and_a_checkpoint(tmp_path):
    cfg = ray_config(env="gym:RtrlAlwaysRaises-v0", max_actor_restarts=1)
    with pytest.raises(ActorError, match=r"actor 0 failed 2 times in a row, more than max_actor_restarts=1 "
                                         r"allows; its last failure: .*RuntimeError: this environment always raises") as error:
        train(cfg, tmp_path, progress=False)
    assert "this environment always raises" in error.value.trace
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    assert checkpoint["steps"] == 0 and checkpoint["actor_restarts"] == 1


# ---- the command line, in its own process with a private Ray -------------------------------------------

def start_training(run_dir: Path, *flags: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rtrl", "train", "--env", MEMORY, "--total-steps", "100000000", "--unroll-length",
           "5", "--batch-size", "4", "--envs-per-actor", "2", "--hidden-size", "8", "--stem", "identity",
           "--num-actors", "2", "--log-interval", "0.2", "--out", str(run_dir), "--no-progress", "--no-plot", *flags]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def seen_processes(pid: int, seen: dict[int, str]) -> dict[int, str]:
    """Add ``pid``'s descendants to ``seen`` (pid -> command line)."""
    for child in descendants(pid) - set(seen):
        try:
            seen[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            pass
    return seen


def stop_after_rows(run_dir: Path, proc: subprocess.Popen, rows: int, signum: int,
                    timeout: float = 120.0) -> tuple[int, str, dict[int, str]]:
    """Send ``signum`` once metrics.csv has ``rows`` rows; the exit code, the output, and the processes
    seen meanwhile (pid -> command line)."""
    seen, deadline = {}, time.monotonic() + timeout
    try:
        while True:
            seen_processes(proc.pid, seen)
            path = run_dir / "metrics.csv"
            if path.exists() and len(path.read_text().splitlines()) >= rows + 1:
                break
            assert proc.poll() is None, f"training ended early:\n{proc.stdout.read()}"
            assert time.monotonic() < deadline, "no metrics row within the timeout"
            time.sleep(0.3)
        seen_processes(proc.pid, seen)
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, out, seen


def metrics_rows(run_dir: Path) -> int:
    return len((run_dir / "metrics.csv").read_text().splitlines()) - 1


def test_sigterm_and_sigint_checkpoint_and_leave_nothing_running_and_the_run_resumes_on_the_other_backend(tmp_path):
    """SIGTERM on Ray, then SIGINT on the local backend resuming the same run (the way back, local to Ray,
    is the same resume; it was dropped to keep make test under 5 minutes)."""
    run_dir = tmp_path / "run"
    code, out, processes = stop_after_rows(run_dir, start_training(run_dir, "--backend", "ray"), 1, signal.SIGTERM)
    assert code == 143 and "checkpoint written" in out and "Traceback" not in out, out
    assert any("raylet" in cmdline for cmdline in processes.values()), "a private Ray ran"
    assert_all_gone(processes)
    steps = load_checkpoint(run_dir / "checkpoint.pt")["steps"]
    assert steps > 0
    # resumes without --force: the backend is a runtime setting
    code, out, processes = stop_after_rows(run_dir, start_training(run_dir, "--backend", "local"),
                                           metrics_rows(run_dir) + 1, signal.SIGINT)
    assert code == 130 and "checkpoint written" in out and "Traceback" not in out, out
    assert load_checkpoint(run_dir / "checkpoint.pt")["steps"] > steps
    assert_all_gone(processes)


def test_a_failing_actor_ends_a_command_line_run_with_exit_1_and_nothing_left_running(tmp_path):
    """The env is registered in the learner's process only: every Ray actor fails to make it."""
    run_dir = tmp_path / "run"
    script = ("import sys, gymnasium as gym; from rtrl.cli import main; "
              "gym.register('RtrlParentOnly-v0', entry_point='gymnasium.envs.classic_control.cartpole:CartPoleEnv'); "
              "sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", script, "train", "--backend", "ray", "--env", "gym:RtrlParentOnly-v0",
                             "--num-actors", "1", "--envs-per-actor", "2", "--batch-size", "2", "--unroll-length", "5",
                             "--hidden-size", "8", "--total-steps", "100", "--max-actor-restarts", "0",
                             "--out", str(run_dir), "--no-progress"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    processes = {}
    try:
        while proc.poll() is None:
            seen_processes(proc.pid, processes)
            time.sleep(0.2)
        out = proc.stdout.read()
    finally:
        proc.kill()
    assert proc.returncode == 1, out
    assert "rtrl train: error: actor 0 failed once, more than max_actor_restarts=0 allows" in out
    assert "ValueError: unknown Gymnasium env 'RtrlParentOnly-v0'" in out   # the actor's error, from its node
    assert load_checkpoint(run_dir / "checkpoint.pt")["steps"] == 0
    assert len(processes) >= 3   # Ray's own processes and the actors ran...
    assert_all_gone(processes)   # ...and are gone
