"""The copy task's models (rtrl/tasks/copy_task/): causal, with resets, and the gradients of RTRL (batched,
fully online, two layers) against BPTT's."""
import pytest
import torch
import torch.nn.functional as F

from conftest import copy_net
from rtrl.settings import SettingError
from rtrl.tasks import copy_task as ct
from rtrl.tasks.copy_task import CopyTaskConfig


@pytest.mark.parametrize("model", ct.MODELS)
def test_models_are_causal_and_remember(model):
    """logits (T,B,3) at step t depend on the tokens up to t (the first one too), never on later ones."""
    torch.manual_seed(0)
    net = copy_net(model, 16).double()
    tokens = torch.randint(0, 4, (8, 3))
    logits, _ = net(tokens, net.initial_state(3))
    assert logits.shape == (8, 3, ct.NUM_CLASSES) and logits.dtype == torch.float64
    later = tokens.clone()
    later[5:] = (later[5:] + 1) % 4                                     # change every token after t=4
    logits_later, _ = net(later, net.initial_state(3))
    assert torch.equal(logits_later[:5], logits[:5])
    assert not torch.allclose(logits_later[5:], logits[5:])
    first = tokens.clone()
    first[0] = (first[0] + 1) % 4                                       # change only the first token
    logits_first, _ = net(first, net.initial_state(3))
    assert (logits_first[-1] - logits[-1]).abs().max() > 1e-6          # still felt 7 steps later


def test_elstm_rtrl_and_bptt_compute_the_same_logits():
    """The same weights give the same logits by RTRL and by BPTT, with or without sensitivities and
    with resets; evaluate() (the no-sensitivity path) scores them alike (float64)."""
    torch.manual_seed(0)
    rtrl_net = copy_net("elstm-rtrl", 12, forget_bias=1.0).double()
    bptt_net = copy_net("elstm-bptt", 12).double()
    bptt_net.load_state_dict(rtrl_net.state_dict())
    tokens = torch.randint(0, 4, (10, 4))
    reset = torch.zeros(10, 4, dtype=torch.bool)
    reset[4, 1] = reset[7, 2] = True
    by_rtrl, _ = rtrl_net(tokens, rtrl_net.initial_state(4), reset=reset)
    by_bptt, _ = bptt_net(tokens, bptt_net.initial_state(4), reset=reset)
    torch.testing.assert_close(by_rtrl, by_bptt, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        cheap, _ = rtrl_net(tokens, rtrl_net.initial_state(4, sensitivities=False), reset=reset)
    torch.testing.assert_close(cheap, by_rtrl.detach(), rtol=1e-12, atol=1e-12)
    data = ct.make_splits(6, seed=2, sizes=(10, 40, 10))["valid"]
    assert ct.evaluate(rtrl_net, data, batch_size=16) == pytest.approx(ct.evaluate(bptt_net, data, batch_size=16))


@pytest.mark.parametrize("model", ["elstm-bptt", "elstm-rtrl"])
def test_reset_starts_a_fresh_sequence_in_its_slot_only(model):
    torch.manual_seed(0)
    net = copy_net(model, 16).double()
    tokens = torch.randint(0, 4, (8, 2))
    reset = torch.zeros(8, 2, dtype=torch.bool)
    reset[3, 0] = True
    logits, _ = net(tokens, net.initial_state(2), reset=reset)
    plain, _ = net(tokens, net.initial_state(2))
    fresh, _ = net(tokens[3:, :1], net.initial_state(1))               # slot 0's new sequence alone
    torch.testing.assert_close(logits[3:, 0], fresh[:, 0], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(logits[3:, 0], plain[3:, 0])
    torch.testing.assert_close(logits[:, 1], plain[:, 1], rtol=0, atol=0)
    torch.testing.assert_close(logits[:3], plain[:3], rtol=0, atol=0)


def test_lstm_takes_no_reset():
    net = copy_net("lstm-bptt", 4)
    with pytest.raises(ValueError, match="the lstm takes no reset"):
        net(torch.zeros(2, 1, dtype=torch.long), reset=torch.zeros(2, 1, dtype=torch.bool))


def test_full_sequence_rtrl_gradient_equals_bptt():
    """Per-token RTRL summed over whole sequences = BPTT's gradient (the same update, float64)."""
    config = CopyTaskConfig(model="elstm-rtrl", full_sequence=True, length=5, hidden_size=6, batch_size=4,
                            grad_clip=0.0)
    data = ct.make_splits(5, seed=0, sizes=(8, 2, 2))["train"]
    torch.manual_seed(0)
    rtrl_model = copy_net("elstm-rtrl", 6).double()
    bptt_model = copy_net("elstm-bptt", 6).double()
    bptt_model.load_state_dict(rtrl_model.state_dict())
    grads = []
    for model, model_name in ((rtrl_model, "elstm-rtrl"), (bptt_model, "elstm-bptt")):
        before = {k: v.clone() for k, v in model.named_parameters()}
        sgd = torch.optim.SGD(model.parameters(), lr=1.0)
        cfg = CopyTaskConfig(**{**config.__dict__, "model": model_name,
                                "full_sequence": model_name == "elstm-rtrl"})
        next(ct.batched_updates(model, data, cfg, sgd, torch.Generator().manual_seed(0)))
        grads.append({k: before[k] - v for k, v in model.named_parameters()})
    for name in grads[0]:
        assert grads[0][name].abs().max() > 0
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-9, atol=1e-12)


class GradientRecorder:
    """An optimizer that keeps each step's gradients and leaves the parameters as they are."""

    def __init__(self, model):
        self.model, self.grads = model, []

    def step(self):
        self.grads.append({n: p.grad.clone() for n, p in self.model.named_parameters()})

    def zero_grad(self, set_to_none=True):
        self.model.zero_grad(set_to_none=set_to_none)


def test_online_rtrl_steps_on_the_bptt_gradient_through_each_past():
    """Every tick of the online loop steps on the exact gradient of that tick's loss through the whole
    past of each slot's sequence (BPTT over the prefix from the slot's reset), θ held fixed, float64."""
    L, B, ticks = 3, 3, 12
    data = ct.make_splits(L, seed=0, sizes=(7, 2, 2))["train"]
    torch.manual_seed(0)
    net = copy_net("elstm-rtrl", 5, forget_bias=2.0).double()
    reference = copy_net("elstm-bptt", 5).double()
    reference.load_state_dict(net.state_dict())
    recorder = GradientRecorder(net)
    config = CopyTaskConfig(model="elstm-rtrl", length=L, batch_size=B, grad_clip=0.0)
    updates = ct.online_updates(net, data, config, recorder, torch.Generator().manual_seed(0))
    finished = sum(next(updates)[1] for _ in range(ticks))
    assert len(recorder.grads) == ticks and finished >= B               # one step per tick; slots restarted
    # the same schedule by hand: slots take sequences in training order, in slot order as they finish
    order = ct.sequence_order(len(data), torch.Generator().manual_seed(0))
    ends = ct.sequence_ends(data).tolist()
    slots = [[next(order), 0] for _ in range(B)]                        # [sequence, position]
    for tick in range(ticks):
        losses = []
        for sequence, position in slots:
            logits, _ = reference(data.inputs[sequence, :position + 1, None], reference.initial_state(1))
            losses.append(F.cross_entropy(logits[position], data.targets[sequence, position:position + 1]))
        reference.zero_grad()
        torch.stack(losses).mean().backward()
        for name, parameter in reference.named_parameters():
            torch.testing.assert_close(recorder.grads[tick][name], parameter.grad, rtol=1e-9, atol=1e-12)
        for slot in slots:
            slot[1] += 1
            if slot[1] >= ends[slot[0]]:
                slot[:] = [next(order), 0]
    assert recorder.grads[-1]["core.weight_c"].abs().max() > 0


@pytest.mark.parametrize("multilayer", ["exact", "per-layer"])
def test_two_layer_full_sequence_rtrl_against_bptt(multilayer):
    """Two stacked eLSTMs: per-token exact RTRL summed over whole sequences = BPTT's update; per-layer
    RTRL (gradients between layers only within each one-token call) is not (float64)."""
    config = CopyTaskConfig(model="elstm-rtrl", full_sequence=True, length=5, hidden_size=5, batch_size=4,
                            grad_clip=0.0, num_layers=2, multilayer=multilayer)
    data = ct.make_splits(5, seed=0, sizes=(8, 2, 2))["train"]
    torch.manual_seed(0)
    rtrl_model = copy_net("elstm-rtrl", 5, num_layers=2, multilayer=multilayer).double()
    bptt_model = copy_net("elstm-bptt", 5, num_layers=2).double()
    bptt_model.load_state_dict(rtrl_model.state_dict())
    grads = []
    for model, cfg in ((rtrl_model, config), (bptt_model, CopyTaskConfig(**{**config.__dict__, "model": "elstm-bptt",
                                                                           "full_sequence": False,
                                                                           "multilayer": "exact"}))):
        before = {k: v.clone() for k, v in model.named_parameters()}
        next(ct.batched_updates(model, data, cfg, torch.optim.SGD(model.parameters(), lr=1.0),
                                torch.Generator().manual_seed(0)))
        grads.append({k: before[k] - v for k, v in model.named_parameters()})
    lower = "core.layers.0.weight_x"
    err = (grads[0][lower] - grads[1][lower]).abs().max() / grads[1][lower].abs().max()
    assert (err <= 1e-10) == (multilayer == "exact")
    if multilayer == "exact":
        for name in grads[0]:
            torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-10, atol=1e-12)
    with pytest.raises(SettingError, match="multilayer='per-layer' applies to learning rtrl only"):
        ct.check_config(CopyTaskConfig(model="lstm-bptt", multilayer="per-layer"))


@pytest.mark.parametrize("cell", ["indrnn", "lru"])
def test_every_elementwise_cell_is_a_copy_task_model_whose_online_rtrl_gradient_is_bptts(cell):
    """The copy task takes the library's cells by name: online RTRL over a whole sequence (T=1 calls, the
    gradients summed) equals BPTT over it (float64)."""
    torch.manual_seed(0)
    rtrl_net = ct.CopyModel(CopyTaskConfig(cell=cell, learning="rtrl", hidden_size=6).model_config()).double()
    bptt_net = ct.CopyModel(CopyTaskConfig(cell=cell, learning="bptt", hidden_size=6).model_config()).double()
    bptt_net.load_state_dict(rtrl_net.state_dict())
    tokens = torch.randint(0, 3, (7, 2))
    logits, _ = bptt_net(tokens, bptt_net.initial_state(2))
    logits.square().sum().backward()
    state = rtrl_net.initial_state(2)
    for t in range(tokens.shape[0]):
        step, state = rtrl_net(tokens[t:t + 1], state)
        step.square().sum().backward()
    for (name, p), q in zip(rtrl_net.named_parameters(), bptt_net.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-12, msg=name)
