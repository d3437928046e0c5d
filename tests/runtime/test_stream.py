"""The streaming learner: its per-step gradients are exact through the whole history since the last reset
(float64, against full-history BPTT), its traces are the discounted sums of those gradients, ObGD's step
never overshoots, and it trains, checkpoints and resumes through ``train`` like any learner."""
import csv
import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import small_config
from rtrl.cli import main
from rtrl.algos.streaming import RunningReturnScale, decay_traces, obgd_step_size, td_error, trace_l1
from rtrl.envs import EnvSpec
from rtrl.runtime.checkpoints import load_checkpoint
from rtrl.runtime.config import PRESETS, TrainConfig, build_agent, resolve_config
from rtrl.runtime.learners.stream import StreamLearner, StreamSource, StreamStep
from rtrl.runtime.train import train
from rtrl.settings import SettingError

MEMORY = "memory:delayed_recall?cues=2&delay=2"


def stream_config(**overrides):
    values = dict(learner="stream", env=MEMORY, stem="identity", hidden_size=5, num_envs=1, total_steps=60,
                  log_interval=1e-9)
    values.update(overrides)
    return small_config(**values)


def episode(T=9, reset_at=4, seed=0):
    """Observations, previous rewards and starts (T,1,...) of a stream with a new episode at ``reset_at``."""
    g = torch.Generator().manual_seed(seed)
    cfg = stream_config()
    spec = EnvSpec.probe(cfg.env, {})
    obs = torch.randn(T, 1, *spec.obs_shape, generator=g, dtype=torch.float64)
    reward = torch.randn(T, 1, generator=g, dtype=torch.float64)
    done = torch.zeros(T, 1, dtype=torch.bool)
    done[0] = done[reset_at] = True
    return cfg, spec, obs, reward, done


def all_autograd(learner):
    """The learner with every gradient taken by autograd (no fused path), so that tests can read them."""
    learner.actor.all_autograd()
    learner.value_net.all_autograd()   # the actor's itself, or a separate critic's
    return learner


def twins(cfg, spec, learning_twin):
    torch.manual_seed(1)
    agent = build_agent(cfg, spec).double()
    if agent.core.weight_c is not None:
        with torch.no_grad():
            agent.core.weight_c.normal_(0, 0.5)   # a recurrence that matters
    twin = build_agent(small_config(**{**cfg.__dict__, "learning": learning_twin}), spec).double()
    twin.load_state_dict(agent.state_dict())
    return agent, twin


@pytest.mark.parametrize("cell", ["elstm", "lru", "indrnn", "rtu", "clru"])
def test_per_step_gradients_equal_bptt_through_the_history_since_the_last_reset(cell):
    """Stepped one step at a time with the RTRL state, as the stream source does, ∇V(s_t) and ∇log π(a_t|s_t)
    equal autograd through the whole sequence since the last reset, for every parameter (float64)."""
    cfg, spec, obs, reward, done = episode()
    cfg = stream_config(cell=cell)
    agent, bptt = twins(cfg, spec, "tbptt")
    learner = all_autograd(StreamLearner(agent, cfg))   # every gradient materialised (the fused path: below)
    actions = torch.arange(obs.shape[0]) % spec.num_actions
    full, _ = bptt(obs, reward, done, bptt.initial_state(1))   # one graph over the whole stream
    state = agent.initial_state(1)
    compared = 0
    for t in range(obs.shape[0]):
        out, state = agent(obs[t:t + 1], reward[t:t + 1], done[t:t + 1], state)
        step = StreamStep(out.policy_logits[0], out.baseline[0], actions[t:t + 1], reward[t], done[t])
        (_, g_value, g_log_prob, _), = learner._gradients(step)
        want_value = torch.autograd.grad(full.baseline[t, 0], list(bptt.parameters()), retain_graph=True,
                                         allow_unused=True)
        log_prob = torch.log_softmax(full.policy_logits[t, 0], -1)[actions[t]]
        want_log_prob = torch.autograd.grad(log_prob, list(bptt.parameters()), retain_graph=True, allow_unused=True)
        for got, want in ((g_value, want_value), (g_log_prob, want_log_prob)):
            for name, g, w in zip([n for n, _ in agent.named_parameters()], got, want):
                g = torch.zeros_like(w) if g is None and w is not None else g
                if w is None:
                    assert g is None or not g.any(), name
                    continue
                torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12, msg=name)
                compared += name.startswith("core.")
    assert compared > 0


def test_tbptt_streams_get_the_one_step_gradient_only():
    """With learning tbptt the stream's state is cut at every step: the gradient of V(s_t) is the one-step
    one, and differs from the full-history gradient once the recurrence matters."""
    cfg, spec, obs, reward, done = episode(T=4, reset_at=3)
    one_step, full = twins(stream_config(learning="tbptt"), spec, "tbptt")
    state, grads = one_step.initial_state(1), None
    for t in range(3):
        out, state = one_step(obs[t:t + 1], reward[t:t + 1], done[t:t + 1], state)
        state = type(state)(state.c.detach(), {}, state.learning)
        grads = torch.autograd.grad(out.baseline[0, 0], one_step.core.weight_x)[0]
    whole, _ = full(obs[:3], reward[:3], done[:3], full.initial_state(1))
    want = torch.autograd.grad(whole.baseline[2, 0], full.core.weight_x)[0]
    assert (grads - want).abs().max() > 1e-6 * want.abs().max()


def test_traces_are_the_discounted_sums_of_the_gradients_and_end_with_the_episode():
    z = [torch.zeros(3, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.float64)]
    g = torch.Generator().manual_seed(0)
    grads = [[torch.randn(3, generator=g, dtype=torch.float64), torch.randn(2, 2, generator=g, dtype=torch.float64)]
             for _ in range(5)]
    decay = 0.99 * 0.8
    for k in range(5):
        decay_traces(z, [grads[k][0], None if k == 2 else grads[k][1]], decay)
    for i in range(2):
        want = sum(decay ** (4 - k) * grads[k][i] for k in range(5) if not (i == 1 and k == 2))
        torch.testing.assert_close(z[i], want, rtol=1e-12, atol=0)
    assert trace_l1(z) == pytest.approx(float(z[0].abs().sum() + z[1].abs().sum()), rel=1e-12)


def test_the_learner_keeps_per_stream_traces_and_zeroes_them_at_an_episode_end():
    """Driven over a real stream with a negligible step size, the value trace is Σ_k (γλ)^{t−k} ∇V_k over
    the steps since the episode began; the transition that ends an episode zeroes it."""
    cfg = stream_config(stream_lr=1e-12, num_envs=2, env="memory:delayed_recall?cues=2&delay=1")
    spec = EnvSpec.probe(cfg.env, {})
    from rtrl.runtime.learners.stream import StreamSource
    torch.manual_seed(0)
    agent = build_agent(cfg, spec)
    source, learner = StreamSource(cfg, spec, agent), all_autograd(StreamLearner(agent, cfg))
    source.fused = False
    history, decay, checked_end = [[], []], cfg.discounting * cfg.trace_decay, False
    for t in range(12):
        experience = source.next()
        learner.update(experience, t)
        pending = learner.pending
        for b in range(2):
            if t > 0:   # the pending step of t-1 has been folded in now
                expected = sum(decay ** (len(history[b]) - 1 - k) * g for k, g in enumerate(history[b]))
                if bool(ended[b]):
                    assert all(not z.any() for z in learner.value_traces[b])
                    history[b], checked_end = [], True
                else:
                    torch.testing.assert_close(learner.value_traces[b][0], expected, rtol=1e-5, atol=1e-7)
            history[b].append(pending[b][1][0])   # ∇V w.r.t. the first parameter, gathered at this step
        ended = experience.data.done.clone()
    assert checked_end   # episodes of 3 steps ended within 12


@pytest.mark.parametrize("delta, l1", [(0.1, 0.5), (5.0, 3.0), (-40.0, 1e3), (1e-9, 1e-9), (2.0, 0.0)])
def test_obgd_bounds_the_step(delta, l1):
    lr, kappa = 1.0, 2.0
    alpha = obgd_step_size(lr, kappa, delta, l1)
    assert 0 < alpha <= lr
    assert alpha * kappa * max(abs(delta), 1.0) * l1 <= 1 + 1e-12
    if lr * kappa * max(abs(delta), 1.0) * l1 <= 1:
        assert alpha == lr
    assert obgd_step_size(lr, kappa, math.nan, l1) == 0.0


def test_obgd_never_overshoots_a_linear_value():
    """For V = w·φ with |φ| ≤ 1 and the trace z = φ, the bounded step moves V toward its target without passing
    it: the TD error keeps its sign and shrinks."""
    g = torch.Generator().manual_seed(3)
    for _ in range(200):
        phi = torch.rand(8, generator=g, dtype=torch.float64) * 2 - 1
        w = torch.randn(8, generator=g, dtype=torch.float64)
        target = float(torch.randn((), generator=g, dtype=torch.float64) * 50)
        delta = target - float(w @ phi)
        alpha = obgd_step_size(1.0, 2.0, delta, float(phi.abs().sum()))
        after = target - float((w + alpha * delta * phi) @ phi)
        assert abs(after) <= abs(delta) and after * delta >= 0


def test_td_error_and_reward_scale():
    value, next_value = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 5.0])
    delta = td_error(torch.tensor([0.5, 1.0]), torch.tensor([False, True]), value, next_value, 0.9)
    torch.testing.assert_close(delta, torch.tensor([0.5 + 0.9 * 3.0 - 1.0, 1.0 - 2.0]))
    scale = RunningReturnScale(1, 0.5)
    returns, g = [], 0.0
    for r in [1.0, 1.0, 1.0, 1.0]:
        g = 0.5 * g + r
        returns.append(g)
        scaled = scale(torch.tensor([r]), torch.tensor([False]))
    var = torch.tensor(returns, dtype=torch.float64).var(unbiased=False)
    torch.testing.assert_close(scaled, torch.tensor([1.0]) / torch.sqrt(var + 1e-8).float())
    restored = RunningReturnScale(1, 0.5)
    restored.load_state_dict(scale.state_dict())
    assert restored.state_dict()["m2"] == scale.state_dict()["m2"]
    # a resumed stream starts a new episode: its return starts at 0, not at the cut episode's 1.875
    assert float(scale.returns[0]) == 1.875 and float(restored.returns[0]) == 0.0
    restored(torch.tensor([1.0]), torch.tensor([False]))
    assert float(restored.returns[0]) == 1.0


def test_a_streaming_run_trains_checkpoints_and_resumes(tmp_path):
    cfg = stream_config(total_steps=40, reward_norm=True, num_envs=2)
    summary = train(cfg, tmp_path, progress=False)
    assert summary["finished"] and summary["steps"] == 40
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    assert checkpoint["updates"] == 20 and checkpoint["config"]["learner"] == "stream"
    assert checkpoint["learner"]["reward_scale"]["count"] == 40   # the return scale saw every stream's step
    assert len(checkpoint["learner"]["value_traces"]) == 2
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"td_error", "step_size_value", "step_size_policy", "trace_norm"} <= set(rows[0])
    assert 0 < float(rows[-1]["step_size_value"]) <= 1.0
    # a larger budget continues the same run without --force (no step size follows it); a smaller one is refused
    with pytest.raises(SettingError, match=r"\(total_steps: 40 -> 30\); it continues only to a larger total_steps"):
        train(stream_config(total_steps=30, reward_norm=True, num_envs=2), tmp_path, progress=False)
    more = stream_config(total_steps=60, reward_norm=True, num_envs=2)
    summary = train(more, tmp_path, progress=False)
    assert summary["steps"] == 60 and load_checkpoint(tmp_path / "checkpoint.pt")["learner"]["reward_scale"]["count"] == 60
    assert json.loads((tmp_path / "config.json").read_text())["total_steps"] == 60
    with pytest.raises(SettingError, match=r"different config \(hidden_size: 5 -> 16, total_steps: 60 -> 80\); use"):
        train(stream_config(total_steps=80, reward_norm=True, num_envs=2, hidden_size=16), tmp_path, progress=False)
    assert main(["eval", str(tmp_path), "--episodes", "4"]) == 0   # evaluated as any run: greedy, from a zero state
    assert json.loads((tmp_path / "eval.json").read_text())["episodes"] == 4


@pytest.mark.slow
def test_streaming_rtrl_learns_a_short_delay_in_seconds(tmp_path):
    """One stream, delay 2 (cue, 2 blanks, query): chance is 0.5; streaming RTRL passes 0.8 within 5000 steps
    (seen here: 0.5 until ~2500 steps, 0.96 at 3900). When a stream learns varies with the seed: within 12k steps,
    seed 0 at ~3.4k, seed 2 at ~7.9k, seed 1 not. (With --critic separate, seen by hand, not run here to keep the
    suite's time: seed 1 at ~7.2k, seed 0 at ~8.2k, seed 2 not; a 9,000-step test took 48 s.)"""
    cfg = stream_config(env="memory:delayed_recall?cues=2&delay=2", hidden_size=16, total_steps=5000,
                        reward_norm=True, log_interval=1000.0, stats_window=100, seed=0)
    summary = train(cfg, tmp_path, progress=False)
    assert summary["success_rate"] > 0.8


@pytest.mark.parametrize("cell, chunked, output_norm, critic, entropy_step, heads", [
    ("elstm", False, False, "shared", "trace", "closed"), ("lru", False, False, "shared", "trace", "closed"),
    ("elstm", True, False, "shared", "trace", "batched"), ("elstm", False, True, "shared", "trace", "batched"),
    ("elstm", False, False, "separate", "trace", "closed"), ("elstm", False, False, "shared", "direct", "closed"),
    ("lru", True, False, "separate", "direct", "batched"), ("elstm", False, False, "shared", "trace", "batched"),
    ("elstm", False, False, "shared", "trace", "multi"), ("indrnn", False, False, "separate", "direct", "closed"),
    ("rtu", False, False, "shared", "direct", "closed"), ("clru", True, False, "separate", "trace", "closed"),
    ("rtu", False, False, "shared", "trace", "batched"), ("lru", False, True, "shared", "direct", "closed"),
    ("indrnn", False, True, "separate", "trace", "closed"), ("clru", False, True, "shared", "trace", "closed"),
    ("rtu", False, False, "separate", "direct", "closed/recurrence"), ("elstm", True, False, "shared", "direct",
                                                                      "closed/recurrence")])
def test_the_fused_path_takes_the_same_steps_as_autograd_without_an_s_sized_allocation(cell, chunked, output_norm,
                                                                                        critic, entropy_step, heads,
                                                                                        monkeypatch):
    """With the sensitivities kept in place and the recurrent gradients folded from S into the traces
    (g_c ⊙ S_t), two streams take exactly the steps the all-autograd path takes (float64), and S stays the
    same tensors from step to step — with the heads' gradients in closed form (``HeadGradients``: the default
    where it applies, an output norm's LayerNorm included; "multi": a MultiDiscrete action) or by batched autograd;
    "/recurrence": with the recurrence's parameters bounded apart (obgd_bound recurrence)."""
    from rtrl.runtime.learners.stream import StreamSource
    heads, _, bound = heads.partition("/")
    if chunked:   # one stream per batched backward call
        from rtrl.runtime.learners import gradients
        monkeypatch.setattr(gradients, "BATCHED_GRAD_ELEMENTS", 1)
    env = "memory:delayed_recall?cues=2&delay=1"
    if heads == "multi":   # actions of a MultiDiscrete([8, 8]): two categoricals side by side
        pytest.importorskip("popgym")
        env = "popgym:BattleshipEasy?multi_discrete=factored"
    cfg = stream_config(cell=cell, num_envs=3 if chunked else 2, env=env,
                        stream_lr=0.3, output_norm=output_norm, critic=critic, entropy_step=entropy_step,
                        entropy_cost=0.3, obgd_bound=bound or "joint")
    spec = EnvSpec.probe(cfg.env, {})
    runs = []
    for fused in (True, False):
        torch.manual_seed(0)
        agent = build_agent(cfg, spec).double()
        source, learner = StreamSource(cfg, spec, agent), StreamLearner(agent, cfg)
        assert source.fused and learner.fused and learner.value_net.fused   # a separate critic's too
        # the closed form is taken wherever it applies (with an output norm too)
        assert learner.actor.closed_form and learner.value_net.closed_form
        if heads == "batched":
            learner.actor.closed_form = learner.value_net.closed_form = False
        if not fused:
            source.fused = False
            all_autograd(learner)
        held = [source.state] + ([learner.critic_state] if critic == "separate" else [])
        buffers = [{name: s.data_ptr() for name, s in state.sensitivity.items()} for state in held]
        for t in range(15):
            learner.update(source.next(), t)
        if fused:   # the engine wrote every S_t over S_{t-1}, the model's and the critic's
            held = [source.state] + ([learner.critic_state] if critic == "separate" else [])
            assert [{name: s.data_ptr() for name, s in state.sensitivity.items()} for state in held] == buffers
        runs.append((agent, learner))
    (fused_agent, fused_learner), (plain_agent, plain_learner) = runs
    for (name, a), b in zip(fused_agent.named_parameters(), plain_agent.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)
    for mine, theirs in zip(fused_learner.policy_traces[1], plain_learner.policy_traces[1]):
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-12)
    if critic == "separate":
        for (name, a), b in zip(fused_learner.critic.named_parameters(), plain_learner.critic.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("cell", ["elstm", "rtu"])
def test_a_separate_critics_value_gradient_is_exact_through_its_own_history(cell):
    """With critic separate, V(s_t) comes from a network of its own, stepped on what the actor read: its
    gradient w.r.t. the critic's parameters equals autograd through the critic's whole sequence since the last
    reset (float64), the actor's log π gradient still equals the model's, and V reaches none of the model's
    parameters."""
    _, spec, obs, reward, done = episode()
    cfg = stream_config(cell=cell, critic="separate")
    agent, bptt = twins(cfg, spec, "tbptt")
    learner = all_autograd(StreamLearner(agent, cfg))
    critic = learner.critic
    assert critic is not agent and critic.obs_norm is None
    with torch.no_grad():
        if critic.core.weight_c is not None:
            critic.core.weight_c.normal_(0, 0.5)
    assert any(not torch.equal(a, b) for a, b in zip(critic.core.parameters(), agent.core.parameters()))
    twin = build_agent(small_config(**{**cfg.__dict__, "learning": "tbptt"}), spec).double()
    twin.load_state_dict(critic.state_dict())
    names = [n for n, p in critic.named_parameters() if not n.startswith("policy")]
    assert [id(p) for p in learner.value_params] == [id(dict(critic.named_parameters())[n]) for n in names]
    actions = torch.arange(obs.shape[0]) % spec.num_actions
    full, _ = twin(obs, reward, done, twin.initial_state(1))
    full_actor, _ = bptt(obs, reward, done, bptt.initial_state(1))
    state, compared = agent.initial_state(1), 0
    for t in range(obs.shape[0]):
        out, state = agent(obs[t:t + 1], reward[t:t + 1], done[t:t + 1], state)
        step = StreamStep(out.policy_logits[0], out.baseline[0], actions[t:t + 1], reward[t], done[t],
                          inputs=(obs[t], reward[t], done[t]))
        (value, g_value, g_log_prob, _), = learner._gradients(step)
        assert value == pytest.approx(float(full.baseline[t, 0].detach()), rel=1e-12)
        twin_params = dict(twin.named_parameters())
        want = torch.autograd.grad(full.baseline[t, 0], [twin_params[n] for n in names], retain_graph=True,
                                   allow_unused=True)
        for name, g, w in zip(names, g_value, want):
            if w is None:
                assert g is None or not g.any(), name
                continue
            torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12, msg=name)
            compared += name.startswith("core.")
        log_prob = torch.log_softmax(full_actor.policy_logits[t, 0], -1)[actions[t]]
        want = torch.autograd.grad(log_prob, list(bptt.parameters()), retain_graph=True, allow_unused=True)
        for (name, _), g, w in zip(agent.named_parameters(), g_log_prob, want):
            if w is not None:
                torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12, msg=name)
    assert compared > 0


def test_a_separate_critic_trains_alone_and_is_checkpointed_and_resumed(tmp_path):
    """The critic's steps move the critic only (the model's value head stays as built), the actor's move the
    model; the critic's weights are in the checkpoint and come back on resume; the run evaluates as any."""
    cfg = stream_config(total_steps=40, num_envs=2, critic="separate", reward_norm=True)
    torch.manual_seed(cfg.seed)
    built = build_agent(cfg, EnvSpec.probe(cfg.env, {}))
    summary = train(cfg, tmp_path, progress=False)
    assert summary["finished"] and summary["nonfinite_updates"] == 0
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    model, critic = checkpoint["model"], checkpoint["learner"]["critic"]
    assert torch.equal(model["baseline.weight"], built.baseline.weight)           # V's steps do not reach it
    assert not torch.equal(model["policy.weight"], built.policy.weight)           # the actor's do
    assert not torch.equal(critic["baseline.weight"], built.baseline.weight)      # the critic's own value head
    assert not torch.equal(critic["core.weight_x"], model["core.weight_x"])       # a network of its own
    more = stream_config(total_steps=60, num_envs=2, critic="separate", reward_norm=True)
    from rtrl.runtime.learners.stream import StreamLearner as Learner
    restored = Learner(build_agent(more, EnvSpec.probe(more.env, {})), more)
    restored.load_state_dict(checkpoint["learner"])
    assert torch.equal(restored.critic.baseline.weight, critic["baseline.weight"])
    assert train(more, tmp_path, progress=False, force=True)["steps"] == 60
    assert main(["eval", str(tmp_path), "--episodes", "4"]) == 0


def test_a_separate_critic_is_a_network_of_its_own_under_either_learner():
    """The streaming learner keeps its critic itself (the model has no value tower); the impala learner's model
    carries it as a value tower (tests/runtime/test_learner.py). A bad value is refused, naming the accepted."""
    spec = EnvSpec.probe(MEMORY, {})
    assert build_agent(stream_config(critic="separate"), spec).value_tower is None
    assert build_agent(small_config(critic="separate"), spec).value_tower is not None
    assert build_agent(small_config(), spec).value_tower is None
    with pytest.raises(SettingError, match="shared"):
        stream_config(critic="both")


@pytest.mark.parametrize("learner, flag, value", [("stream", "batch_size", 7), ("stream", "lr", 0.1),
                                                   ("stream", "backend", "ray"), ("stream", "reward_clip", False),
                                                   ("stream", "vtrace_lambda", 0.9), ("impala", "num_envs", 4),
                                                   ("impala", "stream_lr", 0.5)])
def test_a_setting_only_the_other_learner_reads_is_refused_by_name(learner, flag, value):
    """Given with a value it would not otherwise have, a setting the chosen learner does not read would be
    ignored: refused, naming it and the learner that reads it."""
    preset = "stream" if learner == "stream" else None
    with pytest.raises(SettingError, match=f"({flag}|--{flag.replace('_', '-')})=.* is a setting of the "
                                           f"{'impala' if learner == 'stream' else 'stream'} learner"):
        resolve_config(preset, overrides={"learner": learner, flag: value})
    # the value it has anyway (a copied config.json holds every setting) passes, and so does a preset's
    default = dict(PRESETS.get(preset or "", {})).get(flag, getattr(TrainConfig, flag))
    assert getattr(resolve_config(preset, overrides={"learner": learner, flag: default}), flag) == default
    assert resolve_config("stream", overrides={"learner": "impala"}).num_envs == PRESETS["stream"]["num_envs"]


@pytest.mark.parametrize("entropy_step", ["trace", "direct"])
def test_the_streams_eligibility_traces_are_counted_before_they_are_allocated(entropy_step):
    """Each stream keeps a copy of the parameters per trace: with many streams of a large model they are most of the
    run's memory. They were not counted: 1,000 streams of 4096 units passed the size check and went on to allocate
    625 GiB of traces. Refused now by name, with the streams as what to change; the estimate is the learner's own."""
    big = dict(learner="stream", learning="tbptt", num_envs=1000, hidden_size=4096, stem="mlp", stem_hidden_size=4096,
               total_steps=10_000, entropy_step=entropy_step)
    with pytest.raises(SettingError, match=r"eligibility traces .*num_envs=1000.*fewer streams"):
        resolve_config(overrides=big)
    from rtrl.runtime.sizes import model_sizes, train_parts
    cfg = stream_config(num_envs=3, entropy_step=entropy_step)
    model = build_agent(cfg, EnvSpec.probe(cfg.env, cfg.env_options))
    learner = StreamLearner(model, cfg)
    held = learner.value_traces + learner.policy_traces + (learner.entropy_grads or [])
    allocated = sum(t.numel() * t.element_size() for traces in held for t in traces)
    estimate = dict(train_parts(cfg, model_sizes(model), 1, 4, 2))["eligibility traces"]
    assert allocated <= estimate <= 1.1 * allocated


def test_a_stream_acts_in_a_continuous_action_space(tmp_path):
    """The streaming learner goes through the action distribution like the IMPALA learner: a Gaussian policy
    on Pendulum (a Box action space) trains a few steps, its log-probabilities and entropy finite."""
    cfg = stream_config(env="gym:Pendulum-v1", total_steps=30, reward_norm=True)
    summary = train(cfg, tmp_path, progress=False)
    assert summary["finished"] and summary["nonfinite_updates"] == 0
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert math.isfinite(float(rows[-1]["entropy"])) and float(rows[-1]["step_size_policy"]) > 0


def test_reward_norm_under_the_stream_scales_the_td_error_alone_as_its_help_says(tmp_path, capsys):
    """The stream's reward_norm is its own return scale, in the TD error only: the model's RewardScaler (the core's
    input under the impala learner) is never updated, so the core reads the rewards unscaled. The help said both were
    scaled, whatever the learner."""
    summary = train(stream_config(env="gym:Pendulum-v1", total_steps=30, reward_norm=True), tmp_path, progress=False)
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    assert summary["finished"] and checkpoint["learner"]["reward_scale"]["count"] == 30
    assert float(checkpoint["model"]["reward_norm.stats.count"]) == 0
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "With learner stream, only the TD error's rewards are scaled" in " ".join(capsys.readouterr().out.split())


def test_a_run_shorter_than_its_first_episode_says_so(tmp_path, capsys):
    """No episode ended, so there is no mean return: the summary line says that, not 'mean return nan over the
    last 0 training episodes'; a run with ended episodes prints their mean."""
    out = tmp_path / "short"
    assert main(["train", "--learner", "stream", "--env", "memory:delayed_recall?cues=2&delay=64", "--stem",
                 "identity", "--hidden-size", "4", "--total-steps", "20", "--out", str(out), "--no-progress",
                 "--no-plot"]) == 0
    printed = capsys.readouterr().out
    assert "steps 20: no training episode has ended yet" in printed and "nan" not in printed
    assert main(["train", "--learner", "stream", "--env", "memory:delayed_recall?cues=2&delay=2", "--stem",
                 "identity", "--hidden-size", "4", "--total-steps", "20", "--out", str(tmp_path / "long"),
                 "--no-progress", "--no-plot"]) == 0
    assert "mean return" in capsys.readouterr().out


def test_a_direct_entropy_step_is_outside_the_trace():
    """entropy_step direct: the actor's trace holds ∇log π alone (as with no bonus at all), and the parameters take,
    beside ObGD's α·δ·z, the step α·β·∇H of the pending step, whatever δ is (float64, all autograd)."""
    from rtrl.runtime.learners.stream import StreamSource
    runs = []
    for entropy_step, beta in (("trace", 0.0), ("direct", 0.7)):
        cfg = stream_config(env="memory:delayed_recall?cues=2&delay=1", stream_lr=0.3, entropy_step=entropy_step,
                            entropy_cost=beta)
        spec = EnvSpec.probe(cfg.env, {})
        torch.manual_seed(0)
        agent = build_agent(cfg, spec).double()
        source, learner = StreamSource(cfg, spec, agent), all_autograd(StreamLearner(agent, cfg))
        source.fused = False
        learner.update(source.next(), 0)
        entropy_grad = [None if g is None else g.clone() for g in learner.pending[0][3]]
        stats = learner.update(source.next(), 1)   # the first step: δ_0 known
        runs.append((agent, learner, entropy_grad, stats, beta))
    (plain, plain_learner, _, plain_stats, _), (agent, learner, grad_h, stats, beta) = runs
    assert stats["step_size_policy"] == pytest.approx(plain_stats["step_size_policy"], rel=1e-12)
    for mine, theirs in zip(learner.policy_traces[0], plain_learner.policy_traces[0]):
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=0)
    moved = 0
    for (name, a), b, g in zip(agent.named_parameters(), plain.parameters(), grad_h):
        want = torch.zeros_like(b) if g is None else stats["step_size_policy"] * beta * g
        torch.testing.assert_close(a - b, want, rtol=1e-9, atol=1e-12, msg=name)
        moved += int(g is not None and bool(g.abs().max() > 0))
    assert moved >= 2   # the heads and the core's parameters took the entropy step


def test_the_entropy_step_is_a_setting_of_the_streaming_learner():
    with pytest.raises(SettingError, match="entropy_step='direct' is a setting of the stream learner"):
        resolve_config(None, overrides={"entropy_step": "direct"})
    # the stream preset steps it directly (docs/STREAMING.md: the trace's term let the policy go deterministic
    # at long delays); Stream AC(λ)'s term stays the default without the preset and a flag away with it
    assert resolve_config("stream").entropy_step == "direct" and TrainConfig().entropy_step == "trace"
    assert resolve_config("stream", overrides={"entropy_step": "trace"}).entropy_step == "trace"


@pytest.mark.parametrize("critic", ["shared", "separate"])
def test_the_streaming_learner_restores_the_cells_parameter_bounds_after_each_step(critic):
    """After every ObGD step the streaming learner projects the cells' parameters back into their set (an IndRNN's
    |u| <= max_recurrent), in the model and in a separate critic."""
    cfg = stream_config(cell="indrnn", critic=critic, output_norm=True, stream_lr=0.3)
    spec = EnvSpec.probe(cfg.env, {})
    agent = build_agent(cfg, spec)
    source, learner = StreamSource(cfg, spec, agent), StreamLearner(agent, cfg)
    cores = [agent.core] + ([learner.critic.core] if critic == "separate" else [])
    for core in cores:
        core.max_recurrent = 0.05
        assert (core.weight_c.abs() > 0.05).any()
    for t in range(3):
        learner.update(source.next(), t)
    for core in cores:
        u = core.weight_c.detach()
        assert u.abs().max() <= 0.05 and (u.abs() == 0.05).any()


def test_cells_with_unbounded_outputs_get_an_output_norm_under_the_streaming_learner(caplog):
    """The lru's and indrnn's outputs diverged under the stream preset without a LayerNorm (values ~1e6 within
    5,000 steps): the streaming learner turns output_norm on for them, logged, unless the user set it; the
    eLSTM, the RTU and the impala learner keep the default."""
    import logging
    with caplog.at_level(logging.INFO, logger="rtrl.models.config"):
        assert resolve_config("stream", overrides={"cell": "lru"}).output_norm
    assert "output_norm=True chosen: the lru cell's outputs are unbounded" in caplog.text
    assert resolve_config("stream", overrides={"cell": "indrnn"}).output_norm
    assert not resolve_config("stream", overrides={"cell": "lru", "output_norm": False}).output_norm
    for cell in ("elstm", "rtu"):
        assert not resolve_config("stream", overrides={"cell": cell}).output_norm
    assert not resolve_config("memory", overrides={"cell": "lru"}).output_norm


@pytest.mark.slow
def test_an_lru_under_the_stream_preset_keeps_its_values_in_range(tmp_path):
    """`rtrl train --preset stream --cell lru` for 3,000 steps: the value estimates stay of order 1 (without the
    output norm the preset now chooses for it they passed 1e3 by then)."""
    cfg = resolve_config("stream", overrides={"cell": "lru", "total_steps": 3000, "log_interval": 1e-9})
    train(cfg, tmp_path, progress=False)
    with open(tmp_path / "metrics.csv") as f:
        values = [abs(float(row["value"])) for row in csv.DictReader(f) if row["value"]]
    assert values and max(values) < 20


def test_streams_whose_environments_raise_get_fresh_ones_and_the_run_goes_on(tmp_path):
    """As a backend replaces a failed actor: the environments are replaced (a new seed stream), every stream's
    episode is cut there — no TD step on the step without an outcome, its traces zeroed — the restart is counted
    in the metrics and the checkpoint, and one failure past ``max_actor_restarts`` in a row ends the run with a
    checkpoint and the environment's error."""
    from conftest import FailsOnceEnv, register_test_envs
    from rtrl.runtime.backends import ActorError
    register_test_envs()
    FailsOnceEnv.failed = False
    cfg = stream_config(env="gym:RtrlFailsOnce-v0", num_envs=2, total_steps=60)
    spec = EnvSpec.probe(cfg.env, {})
    agent = build_agent(cfg, spec)
    source, learner = StreamSource(cfg, spec, agent), StreamLearner(agent, cfg)
    cuts = []
    for t in range(25):
        experience = source.next()
        learner.update(experience, t)
        if experience.data.cut:
            cuts.append(t)
            assert learner.pending is None and bool(experience.data.done.all())
            assert all(not z.any() for z in [*learner.value_traces[0], *learner.policy_traces[1]])
        else:
            assert learner.pending is not None
    assert cuts == [19] and source.actor_restarts == 1   # the first environment's 20th step
    FailsOnceEnv.failed = False
    summary = train(cfg, tmp_path / "once", progress=False)
    assert summary["finished"] and load_checkpoint(tmp_path / "once" / "checkpoint.pt")["actor_restarts"] == 1
    with open(tmp_path / "once" / "metrics.csv") as f:
        assert list(csv.DictReader(f))[-1]["actor_restarts"] == "1"
    with pytest.raises(ActorError, match=r"failed 3 times in a row, more than max_actor_restarts=2 .* always raises$"):
        train(stream_config(env="gym:RtrlAlwaysRaises-v0", max_actor_restarts=2), tmp_path / "always", progress=False)
    assert load_checkpoint(tmp_path / "always" / "checkpoint.pt")["steps"] == 2   # the two cut steps it acted


class _FailsAtItsThirdStep(gym.Env):
    """An env whose every episode raises at its third step: it never ends one."""

    action_space, observation_space = gym.spaces.Discrete(2), gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        if self.t == 3:
            raise RuntimeError("fails at the third step")
        return np.zeros(2, np.float32), 0.0, False, self.t >= 6, {}


class _PaysNaNAtItsThirdStep(_FailsAtItsThirdStep):
    def step(self, action):
        self.t += 1
        return np.zeros(2, np.float32), math.nan if self.t == 3 else 0.0, False, self.t >= 6, {}


@pytest.mark.parametrize("learner", ["stream", "impala"])
def test_a_non_finite_reward_is_the_environments_failure_named_as_such(tmp_path, learner):
    """A NaN reward is an environment's failure (replaced like any, and ending the run when it repeats), named by
    what it returned; it reached the losses before, stopping the run as non-finite updates whose cause it guessed."""
    from rtrl.runtime.backends import ActorError
    cfg = (stream_config(env="python:nan", max_actor_restarts=1, total_steps=200) if learner == "stream" else
           small_config(env="python:nan", max_actor_restarts=1, total_steps=640, num_actors=0))
    with pytest.raises(ActorError, match=r"failed 2 times in a row.*python:nan \(seed \d+\) returned the reward "
                                         r"nan; rewards must be finite numbers"):
        train(cfg, tmp_path, progress=False, env_fn=_PaysNaNAtItsThirdStep)


def test_environments_that_fail_before_any_episode_ends_end_the_run(tmp_path):
    """The failures in a row are counted until an episode ends (an actor's until it delivers a rollout): counted
    per step, environments raising at every episode's third step were replaced forever, the run going on with no
    episode ever ending."""
    from rtrl.runtime.backends import ActorError
    with pytest.raises(ActorError, match=r"failed 3 times in a row, more than max_actor_restarts=2 .*third step"):
        train(stream_config(env="python:fails", max_actor_restarts=2, total_steps=200), tmp_path, progress=False,
              env_fn=_FailsAtItsThirdStep)


@pytest.mark.parametrize("cell", ["elstm", "rtu"])
def test_a_recurrence_bound_steps_the_recurrence_parameters_by_their_own_traces(cell):
    """obgd_bound recurrence: the cells' recurrence parameters (weight_c, per_unit) take ObGD's step with the step size
    of their own traces' L1 norm, every other parameter with that of the rest; joint: one step size for all
    (float64, all autograd; the third step's, once c_{t-1} is not zero and weight_c's gradient not either)."""
    from rtrl.cells import recurrence_parameters
    moves = {}
    for bound in ("joint", "recurrence"):
        cfg = stream_config(cell=cell, stream_lr=50.0, obgd_bound=bound, entropy_cost=0.0,
                            env="memory:delayed_recall?cues=2&delay=4")
        spec = EnvSpec.probe(cfg.env, {})
        torch.manual_seed(0)
        agent = build_agent(cfg, spec).double()
        source, learner = StreamSource(cfg, spec, agent), all_autograd(StreamLearner(agent, cfg))
        source.fused = False
        for t in range(2):   # no episode ends in these steps: the traces are read after the checked step
            learner.update(source.next(), t)
        before = [p.detach().clone() for p in agent.parameters()]
        previous, reward, done = learner.pending[0][0], learner.reward.double(), learner.done
        step = source.next()
        delta = float(td_error(reward, done, torch.tensor([previous], dtype=torch.float64),
                               step.data.value.detach().double(), cfg.discounting)[0])
        stats = learner.update(step, 2)
        assert not bool(learner.done[0])
        z, zv = learner.policy_traces[0], learner.value_traces[0]   # the traces the step took (shared network)
        apart = {id(p) for p in recurrence_parameters(agent)}
        assert apart and len(apart) < len(z)
        groups = [[i for i, p in enumerate(agent.parameters()) if (id(p) in apart) == flag] for flag in (False, True)]
        if bound == "joint":
            groups = [groups[0] + groups[1]]
        want = [torch.zeros_like(p) for p in before]
        alphas = []
        for group in groups:
            a_v = obgd_step_size(cfg.stream_lr, cfg.kappa_value, delta, trace_l1([zv[i] for i in group]))
            a_p = obgd_step_size(cfg.stream_lr, cfg.kappa_policy, delta, trace_l1([z[i] for i in group]))
            alphas.append(a_p)
            for i in group:
                want[i] = delta * (a_v * zv[i] + a_p * z[i])
        for (name, p), b, w in zip(agent.named_parameters(), before, want):
            torch.testing.assert_close(p.detach() - b, w, rtol=1e-9, atol=1e-15, msg=name)
            if id(p) in apart:
                assert w.abs().max() > 1e-9, name   # the recurrence's parameters moved: the check has teeth
        assert stats["step_size_policy"] == pytest.approx(alphas[0], rel=1e-12)   # the rest's (heads') step is logged
        moves[bound] = alphas
    assert len(moves["recurrence"]) == 2 and moves["recurrence"][0] != moves["recurrence"][1]
    assert moves["joint"][0] <= min(moves["recurrence"])   # one bound over all traces is the tightest


def test_every_elementwise_cell_has_recurrence_parameters_and_the_others_are_refused():
    from rtrl.cells import recurrence_parameters
    from rtrl.models import ELEMENTWISE_CELLS
    spec = EnvSpec.probe(MEMORY, {})
    for cell in ELEMENTWISE_CELLS:
        agent = build_agent(stream_config(cell=cell), spec)
        names = {name.rsplit(".", 1)[-1] for name, p in agent.core.named_parameters()
                 if any(p is q for q in recurrence_parameters(agent))}
        assert names and names <= {"weight_c", "per_unit"}, cell
    for cell in ("lstm", "ff"):
        with pytest.raises(SettingError, match=f"obgd_bound='recurrence' bounds the recurrence's own parameters apart; "
                                               f"cell='{cell}' has none"):
            stream_config(cell=cell, obgd_bound="recurrence")


@pytest.mark.parametrize("bound", ["joint", "recurrence"])
def test_an_overflowed_trace_takes_no_step_starts_again_and_is_reported(bound):
    """A trace that overflowed (inf) gives ObGD no step size (0), and 0·inf must not write NaN into the weights: its
    group takes no step, its traces start again from zero and the update reports the non-finite trace norm."""
    cfg = stream_config(cell="rtu", stream_lr=0.3, obgd_bound=bound, env="memory:delayed_recall?cues=2&delay=4")
    spec = EnvSpec.probe(cfg.env, {})
    torch.manual_seed(0)
    agent = build_agent(cfg, spec)
    source, learner = StreamSource(cfg, spec, agent), StreamLearner(agent, cfg)
    learner.update(source.next(), 0)
    per_unit = [i for i, p in enumerate(learner.params) if p is agent.core.per_unit][0]
    learner.policy_traces[0][per_unit].fill_(math.inf)
    before = [p.detach().clone() for p in agent.parameters()]
    stats = learner.update(source.next(), 1)
    assert stats["nonfinite"] == ["trace_norm"]
    assert all(bool(p.isfinite().all()) for p in agent.parameters())
    assert not learner.policy_traces[0][per_unit].any()
    moved = [not torch.equal(p.detach(), b) for p, b in zip(agent.parameters(), before)]
    assert any(moved)   # the critic's step (and with the recurrence apart, the actor's other group) still happened
    assert learner.update(source.next(), 2)["nonfinite"] == []   # the next step is a normal one


def test_the_free_space_check_counts_the_streams_traces_that_the_checkpoint_holds(tmp_path):
    """A stream checkpoint holds every stream's traces (2-3 copies of the weights each): the size the run checks the
    disk for at start counts them, where counting the weights twice (RMSprop's state) fell far short of the file."""
    from rtrl.runtime.checkpoints import estimated_checkpoint_size
    cfg = stream_config(num_envs=16, total_steps=32, hidden_size=64, stem="mlp", stem_hidden_size=256,
                        critic="separate")
    train(cfg, tmp_path, progress=False)
    written = (tmp_path / "checkpoint.pt").stat().st_size
    model = build_agent(cfg, EnvSpec.probe(cfg.env, {}))
    learner = StreamLearner(model, cfg)
    assert estimated_checkpoint_size(model, learner) >= written
    assert estimated_checkpoint_size(model) < written / 4   # the weights alone: what was checked before
