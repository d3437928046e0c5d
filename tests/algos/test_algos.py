"""V-trace and the IMPALA losses against independent numpy float64 references written as plain loops."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rtrl.algos import (
    action_log_probs,
    baseline_loss,
    clip_rewards,
    clipped_surrogate_loss,
    entropy_loss,
    linear_decay,
    policy_gradient_loss,
    vtrace,
)

# ----------------------------------------------------------------------------- references


def reference_vtrace(log_mu, log_pi, discounts, rewards, values, bootstrap,
                     rho_bar, pg_rho_bar, c_bar, lam):
    """IMPALA eq. 1 in its *sum* form, v_s = V_s + Σ_{t≥s} (Π_{i<t} γ_i c_i) δ_t, one entry at a time."""
    T, B = values.shape
    vs = np.zeros((T, B))
    adv = np.zeros((T, B))
    for b in range(B):
        def value(t):
            return values[t, b] if t < T else bootstrap[b]

        def ratio(t):
            return float(np.exp(log_pi[t, b] - log_mu[t, b]))

        def clip(x, bar):
            return x if bar is None else min(bar, x)

        for s in range(T):
            total = 0.0
            for t in range(s, T):
                trace = 1.0
                for i in range(s, t):
                    trace *= discounts[i, b] * lam * clip(ratio(i), c_bar)
                delta = clip(ratio(t), rho_bar) * (
                    rewards[t, b] + discounts[t, b] * value(t + 1) - value(t)
                )
                total += trace * delta
            vs[s, b] = values[s, b] + total
        for s in range(T):
            next_v = vs[s + 1, b] if s + 1 < T else bootstrap[b]
            adv[s, b] = clip(ratio(s), pg_rho_bar) * (
                rewards[s, b] + discounts[s, b] * next_v - values[s, b]
            )
    return vs, adv


def n_step_returns(discounts, rewards, bootstrap):
    """G_s = Σ_{t≥s} (Π_{s≤i<t} γ_i) r_t + (Π_{s≤i<T} γ_i) V_boot, summed forwards from each s."""
    T, B = rewards.shape
    returns = np.zeros((T, B))
    for b in range(B):
        for s in range(T):
            scale, total = 1.0, 0.0
            for t in range(s, T):
                total += scale * rewards[t, b]
                scale *= discounts[t, b]
            returns[s, b] = total + scale * bootstrap[b]
    return returns


def make_rollout(T=7, B=3, seed=0, log_ratio_scale=1.0):
    rng = np.random.default_rng(seed)
    log_mu = rng.normal(-1.0, 0.5, size=(T, B))
    log_pi = log_mu + rng.normal(0.0, log_ratio_scale, size=(T, B))
    rewards = rng.normal(size=(T, B))
    values = rng.normal(size=(T, B))
    bootstrap = rng.normal(size=(B,))
    done = np.zeros((T, B), dtype=bool)
    done[2, 0] = True  # episode ends inside the rollout
    done[4, 1] = True
    done[T - 1, 2] = True  # ... or on the last step, which must ignore the bootstrap
    discounts = 0.99 * (1.0 - done)
    return dict(log_mu=log_mu, log_pi=log_pi, discounts=discounts, rewards=rewards,
                values=values, bootstrap=bootstrap)


def run_vtrace(d, dtype=torch.float64, **kwargs):
    t = {k: torch.tensor(v, dtype=dtype) for k, v in d.items()}
    return vtrace(t["log_mu"], t["log_pi"], t["discounts"], t["rewards"], t["values"],
                  t["bootstrap"], **kwargs)


# ----------------------------------------------------------------------------- V-trace


@pytest.mark.parametrize(
    "rho_bar, pg_rho_bar, c_bar, lam",
    [
        (1.0, 1.0, 1.0, 1.0),  # the paper's setting
        (2.0, 0.5, 0.7, 1.0),  # thresholds on both sides of 1, all different
        (1.0, 1.0, 1.0, 0.6),  # λ < 1
        (None, None, None, 0.9),  # no truncation at all
    ],
)
def test_vtrace_matches_reference_float64(rho_bar, pg_rho_bar, c_bar, lam):
    d = make_rollout()
    ratios = np.exp(d["log_pi"] - d["log_mu"])
    for bar in (rho_bar, pg_rho_bar, c_bar):  # the data must exercise both sides of every clip
        if bar is not None:
            assert (ratios > bar).any() and (ratios < bar).any()
    out = run_vtrace(d, clip_rho_threshold=rho_bar, clip_pg_rho_threshold=pg_rho_bar,
                     clip_c_threshold=c_bar, lambda_=lam)
    ref_vs, ref_adv = reference_vtrace(d["log_mu"], d["log_pi"], d["discounts"], d["rewards"],
                                       d["values"], d["bootstrap"], rho_bar, pg_rho_bar, c_bar, lam)
    assert out.vs.dtype == torch.float64
    np.testing.assert_allclose(out.vs.numpy(), ref_vs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(out.pg_advantages.numpy(), ref_adv, rtol=0, atol=1e-10)


def test_vtrace_float32_close_to_float64_reference():
    d = make_rollout(T=50, B=8, seed=1)
    out = run_vtrace(d, dtype=torch.float32, lambda_=0.95)
    ref_vs, ref_adv = reference_vtrace(d["log_mu"], d["log_pi"], d["discounts"], d["rewards"],
                                       d["values"], d["bootstrap"], 1.0, 1.0, 1.0, 0.95)
    assert out.vs.dtype == torch.float32
    # float32 round-off accumulated over a 50-step recursion of O(1) numbers
    np.testing.assert_allclose(out.vs.numpy(), ref_vs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.pg_advantages.numpy(), ref_adv, rtol=1e-5, atol=1e-5)


def test_vtrace_on_policy_is_n_step_return():
    d = make_rollout(T=9, B=4, seed=2)
    d["log_pi"] = d["log_mu"].copy()  # ratio 1 everywhere
    out = run_vtrace(d)
    returns = n_step_returns(d["discounts"], d["rewards"], d["bootstrap"])
    np.testing.assert_allclose(out.vs.numpy(), returns, rtol=0, atol=1e-10)
    # and the advantage is then the n-step return minus the baseline
    np.testing.assert_allclose(out.pg_advantages.numpy(), returns - d["values"], rtol=0, atol=1e-10)


def test_vtrace_episode_end_cuts_the_recursion():
    d = make_rollout(T=7, B=3, seed=3)
    before = run_vtrace(d)
    later = dict(d)
    # change everything after the episode end at step 2 of rollout 0
    later["rewards"] = d["rewards"].copy()
    later["values"] = d["values"].copy()
    later["rewards"][3:, 0] += 5.0
    later["values"][3:, 0] -= 3.0
    later["bootstrap"] = d["bootstrap"] + 7.0
    after = run_vtrace(later)
    torch.testing.assert_close(after.vs[:3, 0], before.vs[:3, 0], rtol=0, atol=1e-12)
    torch.testing.assert_close(after.pg_advantages[:3, 0], before.pg_advantages[:3, 0],
                               rtol=0, atol=1e-12)
    # rollout 2 ends on its last step, so the bootstrap does not reach it at all
    torch.testing.assert_close(after.vs[:, 2], before.vs[:, 2], rtol=0, atol=1e-12)
    # while rollout 1 (no end after step 4) does see the bootstrap at its last step
    assert not torch.allclose(after.vs[-1, 1], before.vs[-1, 1])


def test_vtrace_tiny_case_by_hand():
    # T=2, B=1, γ=0.5, ratios 2 (clipped to 1) then 0.5; r = (1, 2), V = (0, 1), V_boot = 4.
    log_mu = torch.log(torch.tensor([[0.25], [0.5]], dtype=torch.float64))
    log_pi = torch.log(torch.tensor([[0.5], [0.25]], dtype=torch.float64))
    out = vtrace(log_mu, log_pi, torch.full((2, 1), 0.5, dtype=torch.float64),
                 torch.tensor([[1.0], [2.0]], dtype=torch.float64),
                 torch.tensor([[0.0], [1.0]], dtype=torch.float64),
                 torch.tensor([4.0], dtype=torch.float64))
    # δ_1 = 0.5·(2 + 0.5·4 − 1) = 1.5 -> v_1 = 2.5
    # δ_0 = 1·(1 + 0.5·1 − 0) = 1.5, c_0 = 1 -> v_0 = 0 + 1.5 + 0.5·1·(2.5 − 1) = 2.25
    # A_0 = 1·(1 + 0.5·2.5 − 0) = 2.25, A_1 = 0.5·(2 + 0.5·4 − 1) = 1.5
    torch.testing.assert_close(out.vs[:, 0], torch.tensor([2.25, 2.5], dtype=torch.float64))
    torch.testing.assert_close(out.pg_advantages[:, 0], torch.tensor([2.25, 1.5], dtype=torch.float64))


def test_vtrace_carries_no_gradient():
    d = make_rollout()
    t = {k: torch.tensor(v, requires_grad=True) for k, v in d.items()}
    out = vtrace(t["log_mu"], t["log_pi"], t["discounts"], t["rewards"], t["values"], t["bootstrap"])
    assert not out.vs.requires_grad and not out.pg_advantages.requires_grad


def test_vtrace_rejects_mismatched_shapes():
    x = torch.zeros(5, 3)
    with pytest.raises(ValueError, match="rewards has shape"):
        vtrace(x, x, x, torch.zeros(5, 2), x, torch.zeros(3))
    with pytest.raises(ValueError, match="bootstrap_value"):
        vtrace(x, x, x, x, x, torch.zeros(5, 3))
    with pytest.raises(ValueError, match="time-major"):
        vtrace(x[0], x[0], x[0], x[0], x[0], torch.zeros(()))


# ----------------------------------------------------------------------------- losses


def np_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@pytest.fixture
def batch():
    rng = np.random.default_rng(4)
    T, B, A = 6, 4, 5
    return dict(logits=rng.normal(size=(T, B, A)) * 2, actions=rng.integers(0, A, size=(T, B)),
                advantages=rng.normal(size=(T, B)), values=rng.normal(size=(T, B)),
                targets=rng.normal(size=(T, B)))


def test_action_log_probs_matches_numpy(batch):
    logp = np_log_softmax(batch["logits"])
    T, B = batch["actions"].shape
    expected = np.array([[logp[t, b, batch["actions"][t, b]] for b in range(B)] for t in range(T)])
    got = action_log_probs(torch.tensor(batch["logits"]), torch.tensor(batch["actions"]))
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="actions have shape"):
        action_log_probs(torch.tensor(batch["logits"]), torch.tensor(batch["actions"][:, :2]))


def test_policy_gradient_loss_value_and_gradient(batch):
    logits = torch.tensor(batch["logits"], requires_grad=True)
    advantages = torch.tensor(batch["advantages"], requires_grad=True)
    loss = policy_gradient_loss(logits, torch.tensor(batch["actions"]), advantages)
    loss.backward()

    logp = np_log_softmax(batch["logits"])
    probs = np.exp(logp)
    T, B, A = batch["logits"].shape
    expected_loss, expected_grad = 0.0, np.zeros((T, B, A))
    for t in range(T):
        for b in range(B):
            a, adv = batch["actions"][t, b], batch["advantages"][t, b]
            expected_loss -= logp[t, b, a] * adv
            onehot = np.eye(A)[a]
            expected_grad[t, b] = -adv * (onehot - probs[t, b])  # ∂(−A log π_a)/∂z
    assert loss.item() == pytest.approx(expected_loss, abs=1e-10)
    np.testing.assert_allclose(logits.grad.numpy(), expected_grad, rtol=0, atol=1e-10)
    assert advantages.grad is None  # advantages are constants


def test_clipped_surrogate_loss_value_and_gradient(batch):
    """PPO's clipped surrogate against a plain loop: a term outside [1 − ε, 1 + ε] on A's side is constant."""
    rng = np.random.default_rng(7)
    T, B, A = batch["logits"].shape
    logp = np_log_softmax(batch["logits"])
    probs = np.exp(logp)
    taken = np.take_along_axis(logp, batch["actions"][..., None], -1)[..., 0]
    log_mu = taken + rng.normal(size=(T, B)) * 0.4   # ratios spread across the clip range
    eps = 0.2
    logits = torch.tensor(batch["logits"], requires_grad=True)
    loss = clipped_surrogate_loss(logits, torch.tensor(batch["actions"]), torch.tensor(log_mu),
                                  torch.tensor(batch["advantages"]), eps)
    loss.backward()
    expected_loss, expected_grad, clipped = 0.0, np.zeros((T, B, A)), 0
    for t in range(T):
        for b in range(B):
            a, adv = batch["actions"][t, b], batch["advantages"][t, b]
            r = np.exp(taken[t, b] - log_mu[t, b])
            plain, bounded = r * adv, min(max(r, 1 - eps), 1 + eps) * adv
            expected_loss -= min(plain, bounded)
            if plain <= bounded or 1 - eps < r < 1 + eps:   # the unclipped term is the one taken
                expected_grad[t, b] = -adv * r * (np.eye(A)[a] - probs[t, b])
            else:
                clipped += 1
    assert 0 < clipped < T * B
    assert loss.item() == pytest.approx(expected_loss, abs=1e-10)
    np.testing.assert_allclose(logits.grad.numpy(), expected_grad, rtol=0, atol=1e-10)
    # on-policy (ratio 1) its gradient is the policy-gradient loss's
    logits.grad = None
    clipped_surrogate_loss(logits, torch.tensor(batch["actions"]), torch.tensor(taken),
                           torch.tensor(batch["advantages"]), eps).backward()
    on_policy = logits.grad.clone()
    logits.grad = None
    policy_gradient_loss(logits, torch.tensor(batch["actions"]), torch.tensor(batch["advantages"])).backward()
    torch.testing.assert_close(on_policy, logits.grad, rtol=0, atol=1e-12)


def test_baseline_loss_value_and_gradient(batch):
    values = torch.tensor(batch["values"], requires_grad=True)
    targets = torch.tensor(batch["targets"], requires_grad=True)
    loss = baseline_loss(values, targets)
    loss.backward()
    diff = batch["targets"] - batch["values"]
    assert loss.item() == pytest.approx(0.5 * float((diff ** 2).sum()), abs=1e-10)
    np.testing.assert_allclose(values.grad.numpy(), -diff, rtol=0, atol=1e-12)
    assert targets.grad is None  # the V-trace targets are constants
    with pytest.raises(ValueError, match="targets"):
        baseline_loss(values, targets[:, :2])


def test_entropy_loss_value_and_gradient(batch):
    logits = torch.tensor(batch["logits"], requires_grad=True)
    loss = entropy_loss(logits)
    loss.backward()
    logp = np_log_softmax(batch["logits"])
    T, B, A = logp.shape
    expected_loss, expected_grad = 0.0, np.zeros((T, B, A))
    for t in range(T):
        for b in range(B):
            p = np.exp(logp[t, b])
            entropy = -sum(p[a] * logp[t, b, a] for a in range(A))
            expected_loss -= entropy
            # ∂(−H)/∂z_j = π_j (log π_j + H)
            expected_grad[t, b] = p * (logp[t, b] + entropy)
    assert loss.item() == pytest.approx(expected_loss, abs=1e-10)
    np.testing.assert_allclose(logits.grad.numpy(), expected_grad, rtol=0, atol=1e-12)
    # a uniform policy has the maximal entropy log A, and no gradient
    uniform = torch.zeros(2, 3, 4, dtype=torch.float64, requires_grad=True)
    u_loss = entropy_loss(uniform)
    u_loss.backward()
    assert u_loss.item() == pytest.approx(-6 * np.log(4), abs=1e-12)
    assert uniform.grad.abs().max().item() < 1e-15


def test_losses_float32_close_to_float64(batch):
    args64 = (torch.tensor(batch["logits"]), torch.tensor(batch["actions"]))
    args32 = (args64[0].float(), args64[1])
    adv = torch.tensor(batch["advantages"])
    pairs = [
        (policy_gradient_loss(*args64, adv), policy_gradient_loss(*args32, adv.float())),
        (entropy_loss(args64[0]), entropy_loss(args32[0])),
        (baseline_loss(torch.tensor(batch["values"]), torch.tensor(batch["targets"])),
         baseline_loss(torch.tensor(batch["values"]).float(), torch.tensor(batch["targets"]).float())),
    ]
    for l64, l32 in pairs:
        assert l32.dtype == torch.float32
        assert l32.item() == pytest.approx(l64.item(), rel=1e-5, abs=1e-5)


# ----------------------------------------------------------------------------- schedule


def test_linear_decay_with_lambda_lr():
    assert linear_decay(0, 10) == 1.0
    assert linear_decay(5, 10) == pytest.approx(0.5)
    assert linear_decay(10, 10) == 0.0
    assert linear_decay(15, 10) == 0.0  # never negative past the end
    with pytest.raises(ValueError, match="total_steps"):
        linear_decay(0, 0)
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.RMSprop([param], lr=6e-4, alpha=0.99, eps=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: linear_decay(s, 4))
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(lrs, [6e-4, 4.5e-4, 3e-4, 1.5e-4, 0.0], rtol=0, atol=1e-15)


def test_clip_rewards():
    r = torch.tensor([-3.0, -1.0, -0.25, 0.0, 0.5, 1.0, 7.0])
    torch.testing.assert_close(clip_rewards(r), torch.tensor([-1.0, -1.0, -0.25, 0.0, 0.5, 1.0, 1.0]))


@pytest.mark.parametrize("normalize, lam", [(False, 1.0), (True, 1.0), (False, 0.9)])
def test_impala_loss_with_policy_clip_is_the_surrogate_on_vtrace_targets_without_rho(normalize, lam):
    """Off-policy batch with an episode end: the pg term is the clipped surrogate of the loop reference's
    advantages r_s + γ_s v_{s+1} − V_s (no ρ_s), the baseline term unchanged by the clip; with ``vtrace_lambda``
    the targets are the reference's at that λ."""
    from rtrl.algos import LossConfig, impala_loss
    rng = np.random.default_rng(11)
    T, B, A = 6, 3, 4
    logits = torch.tensor(rng.normal(size=(T + 1, B, A)), requires_grad=True)
    behaviour = logits.detach() + torch.tensor(rng.normal(size=(T + 1, B, A)) * 0.5)
    baseline = torch.tensor(rng.normal(size=(T + 1, B)))
    action = torch.tensor(rng.integers(0, A, size=(T + 1, B)))
    reward = torch.tensor(rng.normal(size=(T + 1, B)) * 0.5)
    done = torch.zeros(T + 1, B, dtype=torch.bool)
    done[3, 1] = True
    cfg = LossConfig(entropy_cost=0.0, policy_clip=0.2, normalize_advantages=normalize, vtrace_lambda=lam)
    _, stats = impala_loss(logits, baseline, action, reward, done, behaviour, cfg)
    log_pi = action_log_probs(logits[:-1].detach(), action[:-1]).numpy()
    log_mu = action_log_probs(behaviour[:-1], action[:-1]).numpy()
    discounts = (~done[1:]).double().numpy() * 0.99
    rewards = reward[1:].clamp(-1, 1).numpy()
    values, bootstrap = baseline[:-1].numpy(), baseline[-1].numpy()
    vs, _ = reference_vtrace(log_mu, log_pi, discounts, rewards, values, bootstrap, 1.0, 1.0, 1.0, lam)
    next_vs = np.concatenate([vs[1:], bootstrap[None]])
    advantages = rewards + discounts * next_vs - values
    if normalize:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    ratio = np.exp(log_pi - log_mu)
    expected_pg = -np.minimum(ratio * advantages, np.clip(ratio, 0.8, 1.2) * advantages).sum()
    assert stats["pg_loss"] == pytest.approx(expected_pg, abs=1e-9)
    assert stats["baseline_loss"] == pytest.approx(0.5 * 0.5 * ((vs - values) ** 2).sum(), abs=1e-9)
    assert stats["pg_loss"] != pytest.approx(impala_loss(logits, baseline, action, reward, done, behaviour,
                                                         LossConfig(entropy_cost=0.0))[1]["pg_loss"], abs=1e-6)
