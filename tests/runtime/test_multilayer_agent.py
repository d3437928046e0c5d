"""A stacked eLSTM core in the agent: the learner's exact multi-layer RTRL gradient from the actors'
state equals full-history BPTT; the settings are checked; a run refuses sensitivities that do not fit,
and trains, resumes and evaluates."""
import math

import pytest

from conftest import (MEMORY as MEMORY_ENV, as_double, bptt_gradients, check_rollout_invariants, collect_rollouts,
                      learner_gradients, small_config)
from rtrl.cli import main
from rtrl.envs import EnvSpec
from rtrl.runtime.backends import InlineBackend
from rtrl.runtime.config import build_agent, check_sensitivity_memory
from rtrl.runtime.rollout import collate
from rtrl.runtime.train import train
from rtrl.settings import SettingError


@pytest.mark.parametrize("multilayer", ["exact", "per-layer"])
def test_stacked_core_learner_gradient_against_full_history_bptt(multilayer):
    cfg = small_config(num_layers=2, multilayer=multilayer, hidden_size=6)
    spec, worker, rollouts = collect_rollouts(cfg, 3)
    check_rollout_invariants(worker.model, rollouts, "rtrl-elstm")   # the actors' replay of a stacked state
    batches = [as_double(collate([r])[0]) for r in rollouts]
    agent = build_agent(cfg, spec).double()
    agent.load_state_dict(worker.model.state_dict())
    for layer in agent.core.layers:
        layer.weight_c.data.normal_(0, 0.5)  # a recurrence that matters
    bptt_agent = build_agent(small_config(core="tbptt-elstm", num_layers=2, hidden_size=6), spec).double()
    bptt_agent.load_state_dict(agent.state_dict())
    got = learner_gradients(agent, batches, cfg)
    full = bptt_gradients(bptt_agent, batches, cfg)
    compared = [n for n in got if n.startswith("core.layers.")]
    assert len(compared) == 10
    for name in compared:
        err = (got[name] - full[name]).abs().max() / full[name].abs().max()
        if multilayer == "exact" or name.startswith("core.layers.1.weight") or name.startswith("core.layers.1.bias"):
            assert err <= 1e-9, name   # the top layer's recurrent tensors: its own RTRL is exact in both modes
    lower = (got["core.layers.0.weight_x"] - full["core.layers.0.weight_x"]).abs().max()
    assert (lower <= 1e-9 * full["core.layers.0.weight_x"].abs().max()) == (multilayer == "exact")


def test_settings_name_what_a_stack_accepts():
    with pytest.raises(SettingError, match="num_layers=2 needs an element-wise cell; accepted: elstm, indrnn, lru, rtu, clru "
                                           "\\(not cell='lstm'\\)"):
        small_config(num_layers=2, cell="lstm", learning="tbptt")
    with pytest.raises(SettingError, match="bad multilayer='both'"):
        small_config(multilayer="both")
    with pytest.raises(SettingError, match="num_layers=0"):
        small_config(num_layers=0)


def test_a_run_whose_sensitivities_do_not_fit_is_refused_with_the_estimate(tmp_path):
    cfg = small_config(num_layers=2, hidden_size=16, sensitivity_memory_gib=0.0005)
    spec = EnvSpec.probe(cfg.env, cfg.env_options)
    model = build_agent(cfg, spec)
    per_env = model.core.sensitivity_bytes(1)
    copies = InlineBackend.state_copies(cfg)
    assert copies == 3 * cfg.batch_size   # inline: workers, rollout slots, learner batch
    assert per_env * copies > 0.0005 * 2 ** 30 > model.core._per_layer_bytes(1) * 12
    with pytest.raises(SettingError, match=r"need .* KiB per environment x 12 environment states .* over the "
                                           r"limit of 524 KiB"):
        check_sensitivity_memory(cfg, model, copies)
    with pytest.raises(SettingError, match="over the limit"):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()   # refused before anything was written
    per_layer = small_config(num_layers=2, hidden_size=16, multilayer="per-layer", sensitivity_memory_gib=0.0005)
    check_sensitivity_memory(per_layer, build_agent(per_layer, spec), copies)   # the same sizes per layer fit


def test_a_stacked_run_trains_resumes_and_evaluates(tmp_path):
    cfg = small_config(num_layers=2, total_steps=40)
    assert train(cfg, tmp_path, progress=False)["finished"]
    summary = train(small_config(num_layers=2, total_steps=80), tmp_path, force=True, progress=False)
    assert summary["finished"] and summary["steps"] == 80
    assert main(["eval", str(tmp_path), "--episodes", "2"]) == 0


def test_every_layer_of_a_stacked_core_takes_the_memory_init_options():
    """chrono_max and init_std reach each eLSTM layer of the stack, as they reach a single one."""
    spec = EnvSpec.probe(MEMORY_ENV, {})
    agent = build_agent(small_config(num_layers=2, hidden_size=64, chrono_max=50.0, init_std=0.5), spec)
    for layer in agent.core.layers:
        forget = layer.bias.detach()[1]
        assert forget.std() > 0.3 and forget.max() <= math.log(49) + 1e-6   # chrono, not a constant bias
        assert abs(layer.weight_x.detach().std().item() - 0.5) < 0.05
