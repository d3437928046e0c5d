"""The action distributions against torch.distributions in float64, and V-trace and the IMPALA loss with
continuous actions against the plain-loop references of test_algos."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.distributions as D
from test_algos import reference_vtrace

from rtrl.algos import Categorical, DiagGaussian, LossConfig, MultiCategorical, impala_loss, vtrace
from rtrl.algos.losses import action_log_probs, entropy_loss

T, B, DIM = 6, 4, 3


def gaussian_params(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(T, B, DIM, generator=g, dtype=dtype)
    log_std = torch.randn(T, B, DIM, generator=g, dtype=dtype) * 0.7
    return torch.cat([mean, log_std], -1), mean, log_std


def test_gaussian_log_prob_and_entropy_match_torch_distributions_in_float64():
    params, mean, log_std = gaussian_params()
    action = torch.randn(T, B, DIM, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2
    reference = D.Independent(D.Normal(mean, log_std.exp()), 1)
    dist = DiagGaussian(DIM)
    torch.testing.assert_close(dist.log_prob(params, action), reference.log_prob(action), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(dist.entropy(params), reference.entropy(), rtol=1e-13, atol=1e-13)
    # the gradients too (the policy-gradient loss differentiates the log-probability)
    p = params.clone().requires_grad_()
    dist.log_prob(p, action).sum().backward()
    m, s = mean.clone().requires_grad_(), log_std.clone().requires_grad_()
    D.Independent(D.Normal(m, s.exp()), 1).log_prob(action).sum().backward()
    torch.testing.assert_close(p.grad, torch.cat([m.grad, s.grad], -1), rtol=1e-12, atol=1e-12)


def test_multi_categorical_matches_a_product_of_torch_categoricals():
    nvec = (3, 2, 4)
    g = torch.Generator().manual_seed(0)
    params = torch.randn(T, B, sum(nvec), generator=g, dtype=torch.float64)
    action = torch.stack([torch.randint(n, (T, B), generator=g) for n in nvec], -1)
    parts = params.split(list(nvec), -1)
    log_prob = sum(D.Categorical(logits=p).log_prob(a) for p, a in zip(parts, action.unbind(-1)))
    entropy = sum(D.Categorical(logits=p).entropy() for p in parts)
    dist = MultiCategorical(nvec)
    torch.testing.assert_close(dist.log_prob(params, action), log_prob, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(dist.entropy(params), entropy, rtol=1e-13, atol=1e-13)
    assert dist.sample(params, g).shape == (T, B, 3) and dist.mode(params).shape == (T, B, 3)
    assert (dist.sample(params, g) < torch.tensor(nvec)).all()


def test_categorical_is_the_r2ac_policy_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(T, B, 5, generator=g)
    action = torch.randint(5, (T, B), generator=g)
    dist = Categorical(5)
    assert torch.equal(dist.log_prob(logits, action), action_log_probs(logits, action))
    assert torch.equal(entropy_loss(logits, dist), entropy_loss(logits))
    torch.testing.assert_close(dist.entropy(logits.double()), D.Categorical(logits=logits.double()).entropy())
    assert torch.equal(dist.mode(logits), logits.argmax(-1))


def test_gaussian_sampling_follows_the_distribution_and_the_mode_is_the_mean():
    dist = DiagGaussian(2)
    params = torch.tensor([[1.0, -2.0, math.log(0.5), math.log(2.0)]]).expand(20000, 4)
    samples = dist.sample(params, torch.Generator().manual_seed(0))
    assert samples.shape == (20000, 2) and samples.dtype == torch.float32
    torch.testing.assert_close(samples.mean(0), torch.tensor([1.0, -2.0]), atol=0.05, rtol=0)
    torch.testing.assert_close(samples.std(0), torch.tensor([0.5, 2.0]), atol=0.05, rtol=0)
    assert torch.equal(dist.mode(params[:1]), torch.tensor([[1.0, -2.0]]))
    diverged = dist.sample(torch.full((3, 4), math.nan), torch.Generator().manual_seed(0))
    assert diverged.isfinite().all()


def test_vtrace_with_continuous_actions_matches_the_plain_loop_reference():
    behaviour, _, _ = gaussian_params(seed=0)
    target, _, _ = gaussian_params(seed=1)
    target = behaviour + 0.3 * (target - behaviour)   # a nearby policy: ratios around 1, some clipped
    dist = DiagGaussian(DIM)
    actions = dist.sample(behaviour, torch.Generator().manual_seed(2))
    log_mu, log_pi = dist.log_prob(behaviour, actions), dist.log_prob(target, actions)
    rng = np.random.default_rng(3)
    rewards, values, bootstrap = rng.normal(size=(T, B)), rng.normal(size=(T, B)), rng.normal(size=B)
    discounts = 0.9 * (rng.random((T, B)) > 0.2)
    got = vtrace(log_mu, log_pi, torch.tensor(discounts), torch.tensor(rewards), torch.tensor(values),
                 torch.tensor(bootstrap))
    vs, adv = reference_vtrace(log_mu.numpy(), log_pi.numpy(), discounts, rewards, values, bootstrap,
                               1.0, 1.0, 1.0, 1.0)
    ratios = (log_pi - log_mu).exp()
    assert (ratios > 1).any() and (ratios < 1).any()
    np.testing.assert_allclose(got.vs.numpy(), vs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.pg_advantages.numpy(), adv, rtol=1e-12, atol=1e-12)


def test_impala_loss_with_a_gaussian_policy_takes_its_log_probs_and_entropy():
    params, mean, log_std = gaussian_params(seed=4)
    behaviour = params + 0.1
    dist = DiagGaussian(DIM)
    action = dist.sample(behaviour, torch.Generator().manual_seed(5)).double()
    rng = np.random.default_rng(6)
    baseline = torch.tensor(rng.normal(size=(T, B)))
    reward = torch.tensor(rng.normal(size=(T, B)))
    done = torch.tensor(rng.random((T, B)) < 0.2)
    cfg = LossConfig(discounting=0.95, entropy_cost=0.1, reward_clip=False)
    p = params.clone().requires_grad_()
    total, stats = impala_loss(p, baseline, action, reward, done, behaviour, cfg, dist)
    reference = D.Independent(D.Normal(mean[:-1], log_std[:-1].exp()), 1)
    behaviour_ref = D.Independent(D.Normal(behaviour[:-1, ..., :DIM], behaviour[:-1, ..., DIM:].exp()), 1)
    log_pi, log_mu = reference.log_prob(action[:-1]), behaviour_ref.log_prob(action[:-1])
    returns = vtrace(log_mu, log_pi, (~done[1:]).double() * 0.95, reward[1:], baseline[:-1], baseline[-1])
    pg = -(log_pi * returns.pg_advantages).sum()
    assert stats["pg_loss"] == pytest.approx(pg.item(), rel=1e-12)
    assert stats["entropy_loss"] == pytest.approx(-0.1 * reference.entropy().sum().item(), rel=1e-12)
    total.backward()
    assert p.grad[-1].abs().sum() == 0 and p.grad[:-1].abs().sum() > 0


def test_a_wrong_parameter_width_is_a_clear_error():
    with pytest.raises(ValueError, match="expected 6"):
        DiagGaussian(3).log_prob(torch.zeros(2, 5), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"actions have shape \(2, 2\); expected \(2, 3\)"):
        DiagGaussian(3).log_prob(torch.zeros(2, 6), torch.zeros(2, 2))


@pytest.mark.parametrize("dist", [Categorical(4), MultiCategorical((3, 2))])
def test_closed_form_score_and_entropy_gradients_equal_autograd_in_float64(dist):
    """The streaming learner's closed-form ∂log π(a)/∂params and ∂H/∂params against autograd."""
    g = torch.Generator().manual_seed(3)
    params = (3 * torch.randn(5, dist.param_size, generator=g, dtype=torch.float64)).requires_grad_()
    action = dist.sample(params.detach(), g)
    score, = torch.autograd.grad(dist.log_prob(params, action).sum(), params)
    entropy, = torch.autograd.grad(dist.entropy(params).sum(), params)
    torch.testing.assert_close(dist.log_prob_grad(params.detach(), action), score, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dist.entropy_grad(params.detach()), entropy, rtol=1e-12, atol=1e-12)
