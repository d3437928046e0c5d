"""The learner: its RTRL gradient from the actors' (c, S) equals full-history BPTT, and one update is
RMSprop on the clipped gradient of the IMPALA loss at the decayed learning rate."""
import copy

import pytest
import torch

from conftest import (as_double, bptt_gradients, check_rollout_invariants, collect_rollouts, learner_gradients,
                      rollout_loss, small_config)
from rtrl.runtime.config import build_agent
from rtrl.runtime.experience import Experience
from rtrl.runtime.learners import ImpalaLearner
from rtrl.runtime.rollout import collate


def test_learner_rtrl_gradient_equals_full_history_bptt():
    """Σ_k loss(rollout k) from the carried (c, S) equals BPTT through all rollouts (float64)."""
    cfg = small_config()
    spec, worker, rollouts = collect_rollouts(cfg, 3)
    batches = [as_double(collate([r])[0]) for r in rollouts]
    rtrl_agent = build_agent(cfg, spec).double()
    rtrl_agent.load_state_dict(worker.model.state_dict())
    rtrl_agent.core.weight_c.data.normal_(0, 0.5)  # a recurrence that matters
    bptt_agent = build_agent(small_config(core="tbptt-elstm"), spec).double()
    bptt_agent.load_state_dict(rtrl_agent.state_dict())

    # RTRL: each rollout from the state (c, S) carried by the (float64) actor, gradients accumulate
    got = learner_gradients(rtrl_agent, batches, cfg)

    # BPTT: one graph through all rollouts (steps 0..T-1 of each carry the state to the next)
    full = bptt_gradients(bptt_agent, batches, cfg)
    compared = []
    for name, grad in got.items():
        if name.startswith("stem."):  # the stem gets the within-rollout gradient only (as in the paper)
            continue
        assert (grad - full[name]).abs().max() <= 1e-9 * full[name].abs().max(), name
        compared.append(name)
    assert len(compared) == 9  # cell weight_x, weight_c, bias; output gate, policy, baseline (weight, bias)
    # and truncation loses something: TBPTT's recurrent gradient differs from the full-history one
    truncated = bptt_gradients(bptt_agent, batches, cfg, detach_between_rollouts=True)
    name = "core.weight_x"
    assert (truncated[name] - full[name]).abs().max() > 1e-4 * full[name].abs().max()


@pytest.mark.parametrize("learning", ["rtrl", "tbptt"])
def test_a_value_tower_keeps_the_gradient_exact_and_the_two_networks_apart(learning):
    """With ``critic separate`` the impala learner's agent has a value tower (its own stem and core): the learner's
    gradient from the actors' carried state still equals full-history BPTT for both cores (rtrl) or within-rollout
    BPTT (tbptt; float64); the value reaches none of the policy network's parameters and the policy none of the
    tower's; and an actor's replay of a rollout gives the state that stepping it gives."""
    cfg = small_config(critic="separate", learning=learning)
    spec, worker, rollouts = collect_rollouts(cfg, 3)
    assert worker.model.value_tower is not None
    check_rollout_invariants(worker.model, rollouts, "rtrl-elstm" if learning == "rtrl" else "tbptt-elstm")
    batches = [as_double(collate([r])[0]) for r in rollouts]
    agent = build_agent(cfg, spec).double()
    agent.load_state_dict(worker.model.state_dict())
    for core in agent.cores:
        core.weight_c.data.normal_(0, 0.5)  # a recurrence that matters
    twin = build_agent(small_config(critic="separate", learning="tbptt"), spec).double()
    twin.load_state_dict(agent.state_dict())
    got = learner_gradients(agent, batches, cfg)
    full = bptt_gradients(twin, batches, cfg, detach_between_rollouts=learning == "tbptt")
    recurrent = [name for name in got if ".core." in f".{name}" and "weight_c" in name]
    assert sorted(recurrent) == ["core.weight_c", "value_tower.core.weight_c"]
    for name, grad in got.items():
        if "stem." in name:  # the stems get the within-rollout gradient only (as in the paper)
            continue
        assert (grad - full[name]).abs().max() <= 1e-9 * full[name].abs().max(), name
    batch = batches[0]
    out = agent.outputs(batch.obs, batch.reward, batch.done, as_double(rollouts[0].state))
    policy_net = [p for name, p in agent.named_parameters() if name.split(".")[0] in ("stem", "core", "policy")]
    tower = list(agent.value_tower.parameters()) + list(agent.baseline.parameters())
    for of, params in ((out.baseline, policy_net), (out.policy_logits, tower)):   # (the engine gives zeros, not None)
        grads = torch.autograd.grad(of.sum(), params, retain_graph=True, allow_unused=True)
        assert all(g is None or not g.any() for g in grads)


def test_one_update_is_rmsprop_on_the_clipped_gradient_at_the_decayed_rate():
    cfg = small_config(total_steps=1000, lr=0.01, grad_norm_clip=0.05)
    spec, worker, rollouts = collect_rollouts(cfg, 2)
    batch, _ = collate(rollouts)
    model = build_agent(cfg, spec)
    model.load_state_dict(worker.model.state_dict())
    reference = copy.deepcopy(model)
    learner = ImpalaLearner(model, cfg)
    stats = learner.update(Experience(batch, batch.done.numel()), steps_done=250)
    # the same gradient, computed here
    rollout_loss(reference.outputs(batch.obs, batch.reward, batch.done, batch.state), batch, cfg).backward()
    grads = [p.grad for p in reference.parameters()]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    torch.testing.assert_close(stats["grad_norm"], norm.item(), rtol=1e-5, atol=0)
    assert norm > cfg.grad_norm_clip  # so clipping is exercised
    scale = cfg.grad_norm_clip / (norm + 1e-6)
    lr = cfg.lr * (1 - 250 / 1000)
    assert stats["lr"] == lr
    for p_new, p_old, g in zip(model.parameters(), reference.parameters(), grads):
        g = g * scale
        step = lr * g / (((1 - cfg.rmsprop_alpha) * g * g).sqrt() + cfg.rmsprop_eps)   # RMSprop's first step
        torch.testing.assert_close(p_new.detach(), p_old.detach() - step, rtol=1e-5, atol=1e-7)


def _reference_steps(model, rollouts, cfg, stop_after=None):
    """The learner's passes written out: per pass a permutation from a generator seeded with cfg.seed, each
    share of the rollouts collated on its own and one clipped RMSprop step on its loss; the grad norms."""
    optimizer = torch.optim.RMSprop(model.parameters(), lr=cfg.lr, alpha=cfg.rmsprop_alpha, eps=cfg.rmsprop_eps)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    norms, orders = [], []
    for _ in range(cfg.update_epochs):
        order = torch.randperm(len(rollouts), generator=shuffle)
        orders.append(order.tolist())
        for share in order.tensor_split(cfg.minibatches):
            if stop_after is not None and len(norms) == stop_after:
                return norms, orders
            part, _ = collate([rollouts[i] for i in share.tolist()])
            optimizer.zero_grad()
            rollout_loss(model.outputs(part.obs, part.reward, part.done, part.state), part, cfg).backward()
            norms.append(float(torch.nn.utils.clip_grad_norm_(list(model.parameters()), cfg.grad_norm_clip)))
            optimizer.step()
    return norms, orders


@pytest.mark.parametrize("epochs, minibatches", [(3, 2), (2, 3)])
def test_epochs_and_minibatches_are_steps_on_shuffled_shares_of_whole_rollouts(epochs, minibatches):
    """K passes of M steps, each on whole rollouts from their stored (c, S); M = 3 splits 4 rollouts 2, 1, 1."""
    cfg = small_config(total_steps=10_000, lr=0.01, envs_per_actor=1, batch_size=4, update_epochs=epochs,
                       minibatches=minibatches)
    spec, worker, rollouts = collect_rollouts(cfg, 4)
    batch, _ = collate(rollouts)
    model = build_agent(cfg, spec)
    model.load_state_dict(worker.model.state_dict())
    reference = copy.deepcopy(model)
    stats = ImpalaLearner(model, cfg).update(Experience(batch, batch.done.numel()), steps_done=0)
    norms, orders = _reference_steps(reference, rollouts, cfg)
    assert len(norms) == epochs * minibatches and any(order != sorted(order) for order in orders)   # shuffled
    assert stats["nonfinite"] == []
    torch.testing.assert_close(stats["grad_norm"], sum(norms) / len(norms), rtol=1e-5, atol=0)
    for (name, p_new), p_ref in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p_new.detach(), p_ref.detach(), rtol=1e-5, atol=1e-6, msg=name)
    # and the passes moved the weights beyond one step's move
    one = copy.deepcopy(worker.model)
    ImpalaLearner(one, small_config(total_steps=10_000, lr=0.01, envs_per_actor=1, batch_size=4)).update(
        Experience(batch, batch.done.numel()), steps_done=0)
    assert max((a - b).abs().max() for a, b in zip(one.parameters(), model.parameters())) > 1e-3


def test_a_nonfinite_minibatch_stops_the_update_after_the_steps_before_it():
    cfg = small_config(total_steps=10_000, lr=0.01, envs_per_actor=1, batch_size=4, update_epochs=2, minibatches=2)
    spec, worker, rollouts = collect_rollouts(cfg, 4)
    first = torch.randperm(4, generator=torch.Generator().manual_seed(cfg.seed)).tensor_split(2)
    for i in first[1].tolist():   # the second step's rollouts
        rollouts[i].reward[2] = float("nan")
    batch, _ = collate(rollouts)
    model = build_agent(cfg, spec)
    model.load_state_dict(worker.model.state_dict())
    reference = copy.deepcopy(model)
    stats = ImpalaLearner(model, cfg).update(Experience(batch, batch.done.numel()), steps_done=0)
    assert stats["nonfinite"]
    _reference_steps(reference, rollouts, cfg, stop_after=1)
    for p_new, p_ref in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p_new.detach(), p_ref.detach(), rtol=1e-5, atol=1e-6)


def test_the_shuffle_resumes_from_the_learner_state():
    cfg = small_config(envs_per_actor=1, batch_size=4, minibatches=2)
    spec, worker, _ = collect_rollouts(cfg, 1)
    learner = ImpalaLearner(build_agent(cfg, spec), cfg)
    torch.randperm(4, generator=learner.shuffle)
    resumed = ImpalaLearner(build_agent(cfg, spec), cfg)
    resumed.load_state_dict(copy.deepcopy(learner.state_dict()))
    assert torch.randperm(4, generator=resumed.shuffle).tolist() == torch.randperm(4, generator=learner.shuffle).tolist()


def test_the_learner_restores_the_cells_parameter_bounds_after_each_step():
    """After its optimizer step the learner projects the cells' parameters back into their set (an IndRNN's
    |u| <= max_recurrent, ``rtrl.project_parameters``): with a bound below the init's u ~ U(0, 1), every u ends
    inside it, the ones that were outside on it."""
    cfg = small_config(cell="indrnn", total_steps=10_000, lr=0.01, envs_per_actor=1, batch_size=4)
    spec, worker, rollouts = collect_rollouts(cfg, 4)
    batch, _ = collate(rollouts)
    model = build_agent(cfg, spec)
    model.load_state_dict(worker.model.state_dict())
    model.core.max_recurrent = 0.05
    assert (model.core.weight_c.abs() > 0.05).any()
    ImpalaLearner(model, cfg).update(Experience(batch, batch.done.numel()), steps_done=0)
    u = model.core.weight_c.detach()
    assert u.abs().max() <= 0.05 and (u.abs() == 0.05).any()
