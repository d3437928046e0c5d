"""Stems, cores and the agent: shapes, gradients, initialisation, and the Core protocol every core keeps."""
import pytest
import torch

from conftest import collect_rollouts, small_config
from rtrl.cells import RecurrentState
from rtrl.models import CORES, Agent, LSTMState, NatureCNNStem, NoState, make_stem, sample_actions
from rtrl.tree import map_tensors, tensors_of


@pytest.mark.parametrize("kind, obs_shape", [("resnet", (4, 84, 84)), ("nature", (4, 84, 84)), ("nature", (3, 64, 64))])
def test_image_stems_shape_and_gradient(kind, obs_shape):
    torch.manual_seed(0)
    stem = make_stem(kind, obs_shape, torch.uint8, 32)
    obs = torch.randint(0, 256, (5, 3, *obs_shape), dtype=torch.uint8)
    features = stem(obs)
    assert features.shape == (5, 3, 32) and features.dtype == torch.float32 and (features >= 0).all()
    features.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in stem.parameters())
    # frames are independent: changing one frame changes only its features
    other = obs.clone()
    other[0, 0] = 255 - other[0, 0]
    changed = (stem(other) - features).abs().sum(-1) > 0
    assert changed[0, 0] and changed.sum() == 1


def test_nature_stem_errors():
    with pytest.raises(ValueError, match=r"the nature stem needs \(C, H, W\) image observations, got shape \(8,\)"):
        make_stem("nature", (8,), torch.float32, 16)
    with pytest.raises(ValueError, match="at least 36×36"):
        make_stem("nature", (1, 20, 20), torch.uint8, 16)


def test_nature_stem_initialisation_is_orthogonal_with_relu_gain():
    stem = NatureCNNStem((4, 84, 84), 64)
    gain2 = torch.nn.init.calculate_gain("relu") ** 2
    for layer in (*stem.convs[::2], stem.fc):
        w = layer.weight.detach().flatten(1)
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        torch.testing.assert_close(gram, gain2 * torch.eye(gram.shape[0]), atol=1e-4, rtol=0)
        assert not layer.bias.any()


def test_output_norm_gives_the_heads_the_cores_output_at_unit_scale():
    torch.manual_seed(0)
    obs, reward = torch.randn(3, 2, 6, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    done = torch.zeros(3, 2, dtype=torch.bool)
    normed = Agent((6,), torch.float32, 4, hidden_size=8, stem="identity", output_norm=True).double()
    plain = Agent((6,), torch.float32, 4, hidden_size=8, stem="identity").double()
    plain.load_state_dict(normed.state_dict())   # no parameters of its own: the same network
    state = normed.initial_state(2)
    y, _ = plain.core(plain.core_input(obs, reward, done), state, done)
    out, _ = normed(obs, reward, done, state)
    mean, var = y.mean(-1, keepdim=True), y.var(-1, unbiased=False, keepdim=True)
    expected = (y - mean) / torch.sqrt(var + 1e-5)
    torch.testing.assert_close(out.policy_logits, normed.policy(expected), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.baseline, normed.baseline(expected).squeeze(-1), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(plain(obs, reward, done, state)[0].baseline, out.baseline)


def test_feature_norm_normalises_the_core_input_and_is_off_by_default():
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




def make_agent(core: str, seed: int = 0) -> Agent:
    torch.manual_seed(seed)
    agent = Agent((5,), torch.float32, 3, core=core, hidden_size=6, stem="mlp", stem_hidden_size=7).double()
    if core in ("rtrl-elstm", "tbptt-elstm"):
        with torch.no_grad():
            agent.core.weight_c.normal_(0, 0.5)   # a recurrence that matters
    return agent


def episode_data(T=6, B=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(T, B, 5, generator=g, dtype=torch.float64)
    reward = torch.randn(T, B, generator=g, dtype=torch.float64)
    done = torch.rand(T, B, generator=g) < 0.3
    return obs, reward, done


@pytest.mark.parametrize("core", CORES)
def test_every_core_keeps_the_core_protocol(core):
    """outputs = forward's outputs (same gradient); advance = forward's state; stepping one step at a time
    from the step state gives the same outputs as one call."""
    agent = make_agent(core)
    obs, reward, done = episode_data()
    state = agent.initial_state(3)
    out, after = agent(obs, reward, done, state)
    (out.policy_logits.sum() + out.baseline.sum()).backward()
    grads = [p.grad.clone() for p in agent.parameters()]
    agent.zero_grad()
    only = agent.outputs(obs, reward, done, state)
    (only.policy_logits.sum() + only.baseline.sum()).backward()
    assert torch.equal(only.policy_logits, out.policy_logits) and torch.equal(only.baseline, out.baseline)
    assert all(torch.equal(a, p.grad) for a, p in zip(grads, agent.parameters()))
    advanced = agent.advance(out.core_input.detach(), map_tensors(torch.clone, state), done)
    for a, b in zip(tensors_of(advanced), tensors_of(after)):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=1e-12)
    with torch.no_grad():
        step = agent.step_state(state)
        logits = []
        for t in range(obs.shape[0]):
            o, step = agent(obs[t:t + 1], reward[t:t + 1], done[t:t + 1], step)
            logits.append(o.policy_logits)
    torch.testing.assert_close(torch.cat(logits), out.policy_logits.detach(), rtol=0, atol=1e-12)
    expected_state = {"rtrl-elstm": RecurrentState, "tbptt-elstm": RecurrentState, "lstm": LSTMState, "ff": NoState}
    assert type(after) is expected_state[core] and type(step) is expected_state[core]
    zero_step, zero = agent.initial_step_state(3), agent.step_state(agent.initial_state(3))
    assert type(zero_step) is type(zero) and all(torch.equal(a, b) for a, b in zip(tensors_of(zero_step), tensors_of(zero)))
    assert len(tensors_of(zero_step)) == len(tensors_of(zero))
    assert agent.core.steps_partial_state == (core == "rtrl-elstm")
    if core == "rtrl-elstm":   # the step state has no sensitivities, the full state has them all
        assert step.sensitivity == {} and set(after.sensitivity) == {"weight_x", "weight_c", "bias"}


def test_checkpoints_from_before_the_cell_became_the_core_still_load():
    agent = make_agent("rtrl-elstm")
    old_format = {("core.cell." + k[len("core."):] if k.startswith("core.") else k): v
                  for k, v in agent.state_dict().items()}
    assert "core.cell.weight_x" in old_format
    fresh = make_agent("rtrl-elstm", seed=5)
    fresh.load_state_dict(old_format)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), agent.state_dict().values()))
    with pytest.raises(RuntimeError, match="core.bogus"):
        fresh.load_state_dict({**agent.state_dict(), "core.bogus": torch.zeros(1)})


def test_sample_actions_follows_the_policy():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).expand(20_000, 3)
    counts = torch.bincount(sample_actions(logits, torch.Generator().manual_seed(0)), minlength=3)
    torch.testing.assert_close(counts / 20_000.0, torch.tensor([0.7, 0.2, 0.1]), atol=0.015, rtol=0)
