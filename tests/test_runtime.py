"""R2AC runtime: rollout invariants, the learner's RTRL gradient vs full-history BPTT, checkpoint-resume,
config errors and end-to-end smoke runs of every core."""
import csv
import json

import pytest
import torch

from rtrl.algos import impala_loss
from rtrl.cli import main
from rtrl.models import CORES
from rtrl.runtime.actor import EnvSpec, RolloutWorker, make_agent, rollout_specs
from rtrl.runtime.config import TrainConfig
from rtrl.runtime.local import collate
from rtrl.runtime.train import load_checkpoint, train

MEMORY = "memory:delayed_recall?cues=2&delay=6"


def small_config(**overrides) -> TrainConfig:
    values = dict(env=MEMORY, core="rtrl-elstm", total_steps=640, unroll_length=5, batch_size=4, hidden_size=8,
                  stem="mlp", stem_hidden_size=16, num_actors=0, envs_per_actor=2, log_interval=0.01,
                  checkpoint_interval=1000.0, seed=3)
    values.update(overrides)
    return TrainConfig(**values).validate()


def collect_rollouts(cfg, count):
    """``count`` consecutive rollouts of one worker (weights fixed), each a buffer dict."""
    torch.manual_seed(cfg.seed)  # the worker's model init
    spec = EnvSpec.probe(cfg.env, cfg.env_options)
    worker = RolloutWorker(0, cfg, spec)
    specs = rollout_specs(cfg, spec, worker.model.initial_state(1))
    rollouts = []
    for _ in range(count):
        buf = {k: torch.zeros(shape, dtype=dtype) for k, (shape, dtype) in specs.items()}
        worker.fill(buf)
        rollouts.append(buf)
    return spec, worker, rollouts


@pytest.mark.parametrize("core", CORES)
def test_rollout_invariants(core):
    cfg = small_config(core=core, env="memory:delayed_recall?cues=2&delay=3")
    T = cfg.unroll_length
    spec, worker, rollouts = collect_rollouts(cfg, 4)
    assert rollouts[0]["done"][0].all()  # the very first step starts episodes
    assert rollouts[0]["done"].any(dim=0).all() and rollouts[0]["done"][1:].any()  # episodes end inside
    for prev, nxt in zip(rollouts, rollouts[1:]):
        for key in ("obs", "reward", "done", "action", "policy_logits", "episode_return"):
            assert torch.equal(prev[key][T], nxt[key][0]) or (
                key == "episode_return" and torch.equal(prev[key][T].isnan(), nxt[key][0].isnan())), key
        # the stored state is the state before step 0: replay steps 0..T-1 of the previous rollout from its state
        state = {k[len("state."):]: v.clone() for k, v in prev.items() if k.startswith("state.")}
        with torch.no_grad():
            _, after = worker.model(prev["obs"][:T], prev["reward"][:T], prev["done"][:T], state)
        for key, value in after.items():
            assert torch.allclose(nxt["state." + key], value, atol=1e-5), key
    if core == "rtrl-elstm":
        assert rollouts[-1]["state.sensitivity.weight_x"].abs().sum() > 0


def test_learner_rtrl_gradient_equals_full_history_bptt():
    """Σ_k loss(rollout k) from the carried (c, S) equals BPTT through all rollouts (float64)."""
    cfg = small_config()
    T = cfg.unroll_length
    spec, worker, rollouts = collect_rollouts(cfg, 3)
    batches = [collate([r])[0] for r in rollouts]
    rtrl_agent = make_agent(cfg, spec).double()
    rtrl_agent.load_state_dict(worker.model.state_dict())
    rtrl_agent.core.cell.weight_c.data.normal_(0, 0.5)  # a recurrence that matters
    bptt_cfg = small_config(core="tbptt-elstm")
    bptt_agent = make_agent(bptt_cfg, spec).double()
    bptt_agent.load_state_dict(rtrl_agent.state_dict())

    def as_double(batch):
        return {k: (v.double() if v.is_floating_point() else v) for k, v in batch.items()}

    # RTRL: each rollout from the state (c, S) carried by the (float64) actor, gradients accumulate
    state = rtrl_agent.initial_state(cfg.envs_per_actor)
    for batch in map(as_double, batches):
        loss, _ = impala_loss(rtrl_agent, batch, state, cfg)
        loss.backward()
        state = rtrl_agent.advance_core(rtrl_agent.core_input(batch["obs"][:T], batch["reward"][:T],
                                                              batch["done"][:T]).detach(),
                                        {k: v.clone() for k, v in state.items()}, batch["done"][:T])
    def bptt_gradients(detach_between_rollouts):
        bptt_agent.zero_grad()
        state, total = bptt_agent.initial_state(cfg.envs_per_actor), 0
        for batch in map(as_double, batches):
            if detach_between_rollouts:
                state = {k: v.detach() for k, v in state.items()}
            loss, _ = impala_loss(bptt_agent, batch, state, cfg)
            total = total + loss
            _, state = bptt_agent(batch["obs"][:T], batch["reward"][:T], batch["done"][:T], state)
        total.backward()
        return {name: p.grad.clone() for name, p in bptt_agent.named_parameters()}

    # BPTT: one graph through all rollouts (steps 0..T-1 of each carry the state to the next)
    full = bptt_gradients(detach_between_rollouts=False)
    compared = []
    for name, p in rtrl_agent.named_parameters():
        if name.startswith("stem."):  # the stem gets the within-rollout gradient only (as in the paper)
            continue
        assert (p.grad - full[name]).abs().max() <= 1e-9 * full[name].abs().max(), name
        compared.append(name)
    assert len(compared) == 9  # cell weight_x, weight_c, bias; output gate, policy, baseline (weight, bias)
    # and truncation loses something: TBPTT's recurrent gradient differs from the full-history one
    truncated = bptt_gradients(detach_between_rollouts=True)
    name = "core.cell.weight_x"
    assert (truncated[name] - full[name]).abs().max() > 1e-4 * full[name].abs().max()


class InterruptingBackend:
    """The inline backend, but Ctrl-C arrives after ``limit`` batches."""

    limit = 3

    def __init__(self, cfg, spec, model):
        from rtrl.runtime.local import InlineBackend
        self.inner, self.count = InlineBackend(cfg, spec, model), 0

    def next_batch(self):
        self.count += 1
        if self.count > self.limit:
            raise KeyboardInterrupt
        return self.inner.next_batch()

    def publish(self, model):
        self.inner.publish(model)

    def close(self):
        self.inner.close()


def test_checkpoint_resume_keeps_step_counters_and_optimizer_state(tmp_path):
    cfg = small_config(total_steps=200)  # 10 updates of T·B = 20 steps
    summary = train(cfg, tmp_path, backend_factory=InterruptingBackend, progress=False)
    assert not summary["finished"] and summary["steps"] == 60
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["steps"] == 60 and ckpt["updates"] == 3
    assert all(s["step"] == 3 for s in ckpt["optimizer"]["state"].values())
    summary = train(cfg, tmp_path, progress=False)  # resume
    assert summary["finished"] and summary["steps"] == 200
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["updates"] == 10
    assert all(s["step"] == 10 for s in ckpt["optimizer"]["state"].values())  # optimizer state carried over
    with open(tmp_path / "metrics.csv") as f:
        steps = [int(float(r["step"])) for r in csv.DictReader(f)]
    assert steps == sorted(steps) and steps[-1] == 200 and len(set(steps)) == len(steps)
    assert json.loads((tmp_path / "config.json").read_text()) == cfg.to_dict()
    # a different config in the same directory is an error unless --force
    with pytest.raises(ValueError, match="hidden_size: 8 -> 16"):
        train(small_config(total_steps=200, hidden_size=16), tmp_path, progress=False)
    summary = train(small_config(total_steps=300), tmp_path, force=True, progress=False)
    assert summary["steps"] == 300


@pytest.mark.parametrize("argv, message", [
    (["--env", "atar:Pong"], "known prefixes"),
    (["--env", "gym:Pendulum-v1"], "Pendulum"),
    (["--batch-size", "5", "--envs-per-actor", "2"], "multiple of envs_per_actor"),
    (["--unroll-length", "0"], "unroll_length=0"),
    (["--lr", "-1"], "lr=-1"),
    (["--device", "tpu"], "device='tpu'"),
])
def test_bad_ids_and_flags_give_clear_errors(tmp_path, capsys, argv, message):
    code = main(["train", "--out", str(tmp_path / "run"), "--total-steps", "10", "--num-actors", "0"] + argv)
    assert code == 2
    assert message in capsys.readouterr().out


def test_bad_flag_values_are_rejected_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path), "--core", "gru"])
    assert "invalid choice: 'gru'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path), "--reward-clip", "maybe"])


def test_config_file_and_preset(tmp_path):
    (tmp_path / "c.toml").write_text('hidden-size = 12\ncore = "lstm"\n')
    (tmp_path / "c.yaml").write_text("unroll_length: 7\nbogus: 1\n")
    from rtrl.runtime.config import resolve_config
    from rtrl.runtime.train import add_parser
    import argparse
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "--out", "x", "--preset", "memory", "--config", str(tmp_path / "c.toml"),
                              "--core", "ff"])
    cfg = resolve_config(args)
    assert (cfg.hidden_size, cfg.core, cfg.env) == (12, "ff", "memory:delayed_recall?cues=2&delay=30")
    args = parser.parse_args(["train", "--out", "x", "--config", str(tmp_path / "c.yaml")])
    with pytest.raises(ValueError, match="bogus"):
        resolve_config(args)


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("env", ["gym:CartPole-v1", MEMORY])
def test_end_to_end_smoke_every_core(tmp_path, core, env):
    cfg = small_config(core=core, env=env, total_steps=100)
    summary = train(cfg, tmp_path, progress=False)
    assert summary["steps"] == 100 and summary["finished"]
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "metrics.csv").exists()
    assert any(p.name.startswith("events") for p in (tmp_path / "tensorboard").iterdir())
    code = main(["eval", str(tmp_path), "--episodes", "3", "--sample"])
    assert code == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["episodes"] == 3 and len(result["returns"]) == 3


def test_local_multiprocess_backend_runs(tmp_path):
    cfg = small_config(num_actors=2, total_steps=200)
    summary = train(cfg, tmp_path, progress=False)
    assert summary["finished"] and summary["steps"] == 200


def _children(pid: int) -> list[int]:
    from pathlib import Path
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _wait_for_metrics(run_dir, proc, rows_before=0, timeout=90.0):
    """Wait until metrics.csv has a new row (header + rows_before + 1 lines)."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = run_dir / "metrics.csv"
        if path.exists() and len(path.read_text().splitlines()) >= rows_before + 2:
            return
        assert proc.poll() is None, "training ended early"
        time.sleep(0.5)
    raise AssertionError("no metrics row within the timeout")


def test_sigterm_checkpoints_and_a_killed_learner_takes_its_actors_along(tmp_path):
    """SIGTERM behaves like Ctrl-C (checkpoint, exit 130); after SIGKILL the actor processes exit by themselves."""
    import os
    import signal
    import subprocess
    import sys
    import time
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "rtrl", "train", "--env", MEMORY, "--total-steps", "100000000", "--unroll-length", "5",
           "--batch-size", "4", "--envs-per-actor", "2", "--hidden-size", "8", "--stem", "identity",
           "--num-actors", "2", "--log-interval", "0.2", "--out", str(run_dir), "--no-progress", "--no-plot"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_metrics(run_dir, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
    finally:
        proc.kill()
    assert load_checkpoint(run_dir / "checkpoint.pt")["steps"] > 0
    rows = len((run_dir / "metrics.csv").read_text().splitlines()) - 1
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # resumes
    try:
        _wait_for_metrics(run_dir, proc, rows_before=rows)
        actors = _children(proc.pid)
        assert actors, "the local backend should run actor processes"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in actors):
        time.sleep(0.5)
    alive = []
    for pid in actors:
        try:
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    assert not alive, f"orphaned actor processes {alive}"


def test_an_actor_failure_ends_the_run_with_its_traceback(tmp_path, capsys):
    """An env id registered only in this process: the spawned actor cannot make it and fails; the
    learner reports the actor's traceback and exits 1 (no hang, no silent restart)."""
    import gymnasium as gym
    gym.register("RtrlParentOnly-v0", entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv")
    try:
        code = main(["train", "--env", "gym:RtrlParentOnly-v0", "--num-actors", "1", "--envs-per-actor", "2",
                     "--batch-size", "2", "--unroll-length", "5", "--hidden-size", "8", "--total-steps", "100",
                     "--out", str(tmp_path / "run"), "--no-progress"])
    finally:
        gym.registry.pop("RtrlParentOnly-v0")
    out = capsys.readouterr().out
    assert code == 1, out
    assert "rtrl train: error: actor 0 failed:" in out and "unknown Gymnasium env 'RtrlParentOnly-v0'" in out
    assert "Traceback" in out


def test_an_actor_killed_without_a_report_ends_the_run(tmp_path):
    """SIGKILL one actor process: the learner notices the dead actor instead of waiting forever."""
    import os
    import signal
    import threading
    import time
    from pathlib import Path

    from rtrl.runtime.local import ActorError

    def kill_an_actor():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for pid in _children(os.getpid()):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"spawn_main" in cmdline:
                    time.sleep(1.0)
                    os.kill(pid, signal.SIGKILL)
                    return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_an_actor, daemon=True)
    killer.start()
    cfg = small_config(num_actors=2, total_steps=10_000_000)
    with pytest.raises(ActorError, match=r"died without a report"):
        train(cfg, tmp_path, progress=False)
    killer.join(timeout=5)


def test_feature_norm_normalises_the_core_input_and_is_off_by_default():
    from rtrl.models import Agent
    torch.manual_seed(0)
    obs = torch.randn(3, 2, 6) * 50 + 20
    reward, done = torch.tensor([[0.5, 3.0]] * 3), torch.zeros(3, 2, dtype=torch.bool)
    plain = Agent((6,), torch.float32, 4, core="ff", hidden_size=8, stem="mlp", stem_hidden_size=16)
    normed = Agent((6,), torch.float32, 4, core="ff", hidden_size=8, stem="mlp", stem_hidden_size=16,
                   feature_norm=True)
    assert plain.feature_norm is None and not any("feature_norm" in k for k in plain.state_dict())
    x = normed.core_input(obs, reward, done)
    features = x[..., :-1]
    torch.testing.assert_close(features.mean(-1), torch.zeros(3, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(features.var(-1, unbiased=False), torch.ones(3, 2), atol=1e-3, rtol=0)
    assert torch.equal(x[..., -1], torch.tensor([[0.5, 1.0]] * 3))         # the clipped reward is not normalised
    cfg = small_config(feature_norm=True, total_steps=40)
    spec, worker, _ = collect_rollouts(cfg, 1)
    assert worker.model.feature_norm is not None


def test_an_actor_whose_learner_died_before_it_started_exits_at_once():
    """The watchdog compares against the learner's pid handed over at spawn: an actor re-parented
    while still importing (its learner killed early) must not adopt its new parent as the learner."""
    import subprocess
    import sys
    code = ("from rtrl.runtime.actor import _exit_with_parent; import os, time; "
            "_exit_with_parent(os.getppid()); print('watched', flush=True); "
            "_exit_with_parent(os.getppid() + 100000); time.sleep(5); print('still alive')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == "watched\n", (result.returncode, result.stdout, result.stderr)
