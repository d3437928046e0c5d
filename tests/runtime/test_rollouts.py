"""The rollout layout: what actors write (T+1 steps, step 0 repeating, the state before step 0) and
how rollouts of any core's typed state are collated for the learner."""
import pytest
import torch

from conftest import check_rollout_invariants, collect_rollouts, small_config
from rtrl.cells import RecurrentState
from rtrl.envs import EnvSpec
from rtrl.models import CORES, LSTMState, NoState
from rtrl.runtime.rollout import STEP_FIELDS, collate, empty_rollout
from rtrl.tree import tensors_of


@pytest.mark.parametrize("core", CORES)
def test_rollout_invariants(core):
    cfg = small_config(core=core, env="memory:delayed_recall?cues=2&delay=3")
    spec, worker, rollouts = collect_rollouts(cfg, 4)
    assert rollouts[0].done.any(dim=0).all() and rollouts[0].done[1:].any()  # episodes end inside
    check_rollout_invariants(worker.model, rollouts, core)
    state_type = {"rtrl-elstm": RecurrentState, "tbptt-elstm": RecurrentState, "lstm": LSTMState, "ff": NoState}[core]
    assert type(rollouts[-1].state) is state_type
    if core == "rtrl-elstm":
        assert rollouts[-1].state.sensitivity["weight_x"].abs().sum() > 0


def test_collate_concatenates_steps_and_typed_states_and_counts_episodes_once():
    cfg = small_config(env="memory:delayed_recall?cues=2&delay=1")   # episodes of 3 steps: several per rollout
    spec, worker, rollouts = collect_rollouts(cfg, 3)
    batch, episodes = collate(rollouts[1:])
    E = cfg.envs_per_actor
    assert batch.obs.shape == (cfg.unroll_length + 1, 2 * E) + spec.obs_shape
    for name in STEP_FIELDS:
        torch.testing.assert_close(getattr(batch, name)[:, E:], getattr(rollouts[2], name), rtol=0, atol=0,
                                   equal_nan=True, msg=name)
    assert isinstance(batch.state, RecurrentState) and batch.state.learning == "rtrl"
    assert torch.equal(batch.state.c[:E], rollouts[1].state.c)
    for name, s in batch.state.sensitivity.items():
        assert s.shape[0] == 2 * E and torch.equal(s[E:], rollouts[2].state.sensitivity[name])
    # episodes that ended in steps 1..T; step 0 repeats the previous rollout's last step
    ended = int((~rollouts[1].episode_return[1:].isnan()).sum() + (~rollouts[2].episode_return[1:].isnan()).sum())
    assert len(episodes) == ended > 0
    assert all(e["length"] == 3 and e["success"] in (0.0, 1.0) and e["return"] == e["success"] for e in episodes)
    # the batch moves to a device (here: the same) without losing its types
    moved = batch.to("cpu")
    assert isinstance(moved.state, RecurrentState) and torch.equal(moved.state.c, batch.state.c)


def test_select_takes_back_the_rollouts_collate_put_together():
    cfg = small_config(envs_per_actor=1)
    _, _, rollouts = collect_rollouts(cfg, 3)
    batch, _ = collate(rollouts)
    picked = batch.select(torch.tensor([2, 0]))
    expected, _ = collate([rollouts[2], rollouts[0]])
    assert isinstance(picked.state, RecurrentState)
    for got, want in zip(tensors_of(picked), tensors_of(expected), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)   # episode columns hold NaN


def test_shared_rollouts_hold_every_core_state_in_shared_memory():
    spec = EnvSpec((3,), torch.float32, 2)
    lstm = LSTMState(torch.zeros(1, 4), torch.zeros(1, 4))
    rollout = empty_rollout(5, 2, spec, lstm, shared=True)
    assert rollout.obs.shape == (6, 2, 3) and rollout.state.h.shape == (2, 4)
    assert all(t.is_shared() for t in tensors_of(rollout))
    assert type(empty_rollout(5, 2, spec, NoState()).state) is NoState
