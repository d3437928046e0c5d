"""The memory-suite options of the agent and the loss: chrono forget-gate init, init_std, normalised advantages."""
import math

import numpy as np
import pytest
import torch

import rtrl
from rtrl.algos import LossConfig, impala_loss
from rtrl.algos.losses import normalize_advantages, policy_gradient_loss
from rtrl.cells import chrono_forget_bias
from rtrl.models import Agent
from rtrl.runtime.config import PRESETS, resolve_config
from rtrl.settings import SettingError


def test_chrono_biases_spread_time_scales_from_2_to_chrono_max():
    bias = chrono_forget_bias(20_000, 300.0, torch.Generator().manual_seed(0))
    time_scale = 1 / (1 - torch.sigmoid(bias.double()))          # 1 + u, u ~ U(1, 299)
    assert time_scale.min() >= 2 - 1e-9 and time_scale.max() <= 300 + 1e-9
    assert abs(time_scale.mean().item() - 151) < 2               # uniform over [2, 300]
    np.testing.assert_allclose(time_scale.numpy(), 1 + bias.double().exp().numpy(), rtol=1e-12)


def test_elstm_takes_chrono_over_forget_bias_and_init_std():
    torch.manual_seed(0)
    cell = rtrl.ELSTM(5, 4000, forget_bias=3.0, init_std=0.5, chrono_max=50.0)
    b_f = cell.bias.detach()[1]
    assert b_f.min() >= 0 and b_f.max() <= math.log(49) + 1e-6 and b_f.std() > 0.5   # not a constant 3
    assert abs(cell.weight_x.detach().std().item() - 0.5) < 0.01 and abs(cell.bias[0].detach().std().item() - 0.5) < 0.03
    plain = rtrl.ELSTM(5, 8, forget_bias=3.0)
    assert torch.equal(plain.bias.detach()[1], torch.full((8,), 3.0))
    with pytest.raises(ValueError, match="chrono_max must be 0 .off. or > 2, got 2"):
        rtrl.ELSTM(5, 8, chrono_max=2)


def test_lstm_core_chrono_sets_forget_and_input_gates():
    torch.manual_seed(1)
    agent = Agent((6,), np.float32, 3, core="lstm", hidden_size=16, stem="identity", chrono_max=100.0)
    lstm = agent.core.lstm
    N = 16
    forget = (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach()[N:2 * N]
    gate_in = (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach()[:N]
    assert forget.min() >= 0 and forget.max() <= math.log(99) + 1e-6
    assert torch.equal(gate_in, -forget)


def test_chrono_and_init_std_are_settings_with_clear_errors():
    cfg = resolve_config("memory-suite")
    assert (cfg.chrono_max, cfg.init_std, cfg.normalize_advantages, cfg.hidden_size) == (300.0, 0.5, True, 128)
    assert PRESETS["memory"].get("chrono_max") is None   # make train's job is unchanged
    for bad, message in [(dict(chrono_max=1.5), "bad chrono_max=1.5; accepted: 0 (off) or a number > 2"),
                         (dict(init_std=0.0), "bad init_std=0.0; accepted: a positive finite number")]:
        with pytest.raises(SettingError) as error:
            resolve_config("memory-suite", overrides=bad)
        assert message in str(error.value)


def test_normalize_advantages_matches_numpy():
    rng = np.random.default_rng(0)
    advantages = rng.normal(3.0, 0.01, size=(7, 5))
    got = normalize_advantages(torch.tensor(advantages)).numpy()
    expected = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    assert abs(got.mean()) < 1e-12 and abs(got.std() - 1) < 1e-5   # eps 1e-8 against a std of 0.01
    assert torch.equal(normalize_advantages(torch.full((3, 2), 4.0)), torch.zeros(3, 2))


def test_impala_loss_uses_normalised_advantages_only_when_asked():
    torch.manual_seed(0)
    T, B, A = 5, 3, 4
    logits = torch.randn(T + 1, B, A, dtype=torch.float64, requires_grad=True)
    baseline = torch.randn(T + 1, B, dtype=torch.float64)
    action = torch.randint(A, (T + 1, B))
    reward = torch.randn(T + 1, B, dtype=torch.float64) * 0.01
    done = torch.zeros(T + 1, B, dtype=torch.bool)
    behaviour = logits.detach().clone()
    plain = impala_loss(logits, baseline, action, reward, done, behaviour, LossConfig(entropy_cost=0.0))[1]
    normed = impala_loss(logits, baseline, action, reward, done, behaviour,
                         LossConfig(entropy_cost=0.0, normalize_advantages=True))[1]
    assert plain["baseline_loss"] == normed["baseline_loss"] and plain["pg_loss"] != normed["pg_loss"]
    # on-policy V-trace advantages with ρ = 1 are r + γ v_{s+1} − V: rebuild them and compare the pg term
    from rtrl.algos import vtrace
    from rtrl.algos.losses import action_log_probs
    logp = action_log_probs(logits[:-1].detach(), action[:-1])
    returns = vtrace(logp, logp, torch.full((T, B), 0.99, dtype=torch.float64), reward[1:].clamp(-1, 1),
                     baseline[:-1], baseline[-1])
    expected = policy_gradient_loss(logits[:-1], action[:-1], normalize_advantages(returns.pg_advantages))
    assert abs(normed["pg_loss"] - expected.item()) < 1e-9
