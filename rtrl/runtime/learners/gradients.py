"""The per-stream gradients the streaming learner (``rtrl.runtime.learners.stream``) folds into its traces.

``Gradients.of``: by autograd — on the fused path (``in_place_core``) in batched backward calls down to c_t and
the non-recurrent parameters, the recurrent ones' gradient being g_c ⊙ S_t, folded from S by the learner;
otherwise through the engine, a call per stream and output. ``HeadGradients.of``: the fused path's gradients in
closed form, without autograd.

The closed form. On the fused path the learner needs, per stream and output f (V(s_t), log π(a_t|s_t),
H(π(·|s_t))), the gradient of f w.r.t. every parameter that is not recurrent, and the coefficient g_c = ∂f/∂c_t.
Between c_t and f there are only the cell's readout y_t = readout(x_t, c_t) and two linear heads, so with
u = ∂f/∂y_t (the value head's weight row for V; Wπᵀ s for log π and H, s the distribution's closed-form gradient
w.r.t. its parameters: ``log_prob_grad``, ``entropy_grad``):

    g_c = (∂y/∂c)ᵀ u   (u itself when y = c),   ∂f/∂ρ[m] = u_m ∂y_m/∂ρ[m] for a readout parameter ρ,
    ∂f/∂W = s yᵀ, ∂f/∂b = s for the head f comes from (s = 1 for V); the other head's: not reached (None).

The readout's Jacobians are the cell's own (``readout_derivatives``, which stacked cores already use). An output
norm ŷ = (y − ȳ)/σ between the core and the heads (heads reading ŷ) turns u into (u − mean u − ŷ mean(u ⊙ ŷ))/σ.
It applies when nothing else lies between the core and the outputs: a categorical or multi-categorical
policy (a Gaussian's log std is clamped in the head), and no parameter but the core's and the two heads'
(``HeadGradients.applies``). Tested in float64 against both autograd paths (tests/runtime/test_stream.py).
"""
from __future__ import annotations

import torch
from torch import Tensor

from rtrl.models import Agent


# at most this many gradient elements per batched backward call of the fused path (64 MB in float32)
BATCHED_GRAD_ELEMENTS = 1 << 24


def in_place_core(model: Agent) -> bool:
    """Whether the stream can keep its sensitivities in place and the learner take the recurrent gradients from
    them (g ⊙ S_t, fused into the traces): a single-layer element-wise cell (real or paired) trained by RTRL whose
    inputs come from parameter-free parts (identity stem, no feature norm), so that no gradient has to flow
    back through the engine. Otherwise every gradient goes through autograd and the engine's backward."""
    core = model.core
    return (getattr(core, "learning", None) == "rtrl" and hasattr(core, "run_in_place")
            and getattr(core, "channels", 1) in (1, 2) and model.feature_norm is None
            and not any(True for _ in model.stem.parameters()))


class Gradients:
    """The per-stream gradients of a network's outputs w.r.t. its parameters ``params``. On the fused path
    (``in_place_core``) the recurrent parameters' entries are (name, g_c): their gradient g_c ⊙ S_t is folded
    into the traces from the sensitivities S in place (``StreamLearner._step``), so no gradient goes through the
    engine; otherwise every entry is autograd's (None: a parameter the output does not reach)."""

    def __init__(self, net: Agent, params: list[Tensor]):
        self.params, self.fused = params, in_place_core(net)
        core = net.core
        self.recurrent = {id(p): name for name, p in (("weight_x", core.weight_x), ("weight_c", core.weight_c),
                          ("bias", core.bias), ("per_unit", core.per_unit)) if p is not None} if self.fused else {}
        self.others = [p for p in params if id(p) not in self.recurrent]
        self.heads = HeadGradients(net, params, self.recurrent) if self.fused else None
        # the fused path's gradients in closed form where they have one (``HeadGradients``), else batched autograd
        self.closed_form = self.heads is not None and self.heads.applies

    def all_autograd(self) -> "Gradients":
        """Every gradient by autograd through the engine (the reference the fused path is tested against)."""
        self.fused, self.recurrent, self.others, self.closed_form = False, {}, self.params, False
        return self

    def of(self, terms: tuple[Tensor, ...], core_states: Tensor | None) -> list[list]:
        """Per stream, the gradients of each of ``terms`` (each (B,)) w.r.t. ``params`` (on the fused path,
        through ``core_states``: c_t (1,B,N), for the recurrent ones)."""
        k, B, out = len(terms), len(terms[0]), []
        if self.fused:   # the k·B gradients in batched backward calls (vmap over the grad outputs; 4.7x the loop's
            # speed at B = 4, 1.2x at B = 1). The engine is not in this graph, so nothing needs a vmap rule. Streams
            # go in chunks: each batched output holds all of c_t (B,N), so one call for all B would grow as B².
            losses = torch.stack(terms)                                                  # (k, B)
            inputs = [core_states] + self.others
            chunk = max(1, BATCHED_GRAD_ELEMENTS // (k * sum(t.numel() for t in inputs)))
            for b0 in range(0, B, chunk):
                streams = range(b0, min(B, b0 + chunk))
                c = len(streams)
                basis = torch.zeros(k * c, k, B, dtype=losses.dtype, device=losses.device)
                for i in range(k):
                    for j, b in enumerate(streams):
                        basis[i * c + j, i, b] = 1
                batched = torch.autograd.grad(losses, inputs, grad_outputs=basis, allow_unused=True,
                                              retain_graph=streams.stop < B, is_grads_batched=True)
                for j, b in enumerate(streams):
                    out.append([self._aligned(batched[0][i * c + j, 0, b],
                                              [None if g is None else g[i * c + j] for g in batched[1:]])
                                for i in range(k)])
            return out
        for b in range(B):
            last = b == B - 1
            out.append([torch.autograd.grad(f[b], self.params, retain_graph=not (last and i == k - 1),
                                            allow_unused=True) for i, f in enumerate(terms)])
        return out

    def _aligned(self, coefficient: Tensor, others: tuple) -> list:
        """The fused path's gradients in ``params`` order: a recurrent parameter's entry is (its name, g_c)."""
        rest = iter(others)
        return [(self.recurrent[id(p)], coefficient) if id(p) in self.recurrent else next(rest) for p in self.params]

    def folds(self, coefficients: list[list], traces: list[list[Tensor]]) -> dict:
        """For ``complete_pending``: per recurrent parameter (by its sensitivity's name), the traces of every
        stream with their coefficients g_c (B,N), for z_b ← decay · z_b + g_c[b] ⊙ S[b] in the pass over S;
        ``coefficients[b]``: stream b's gradient entries, ``traces[b]``: its traces, both in ``params`` order."""
        folds = {}
        for i, p in enumerate(self.params):
            name = self.recurrent.get(id(p))
            if name is not None:
                folds[name] = [(torch.stack([g[i][1] for g in coefficients]), [z[i] for z in traces])]
        return folds


class HeadGradients:
    """The closed-form gradients of a network whose fused core's recurrent parameters are ``recurrent`` (their id
    to their sensitivity's name), w.r.t. ``params`` (in order): ``of(kinds, x, c, logits, action)``."""

    def __init__(self, net: Agent, params: list[Tensor], recurrent: dict[int, str]):
        self.net = net
        core, heads = net.core, {"policy": net.policy, "baseline": net.baseline}
        roles = {id(p): ("readout", name) for name, p in core.readout_parameters().items()}
        for head, module in heads.items():
            if isinstance(module, torch.nn.Linear):
                roles[id(module.weight)], roles[id(module.bias)] = (head, "weight"), (head, "bias")
        roles.update({key: ("recurrent", name) for key, name in recurrent.items()})
        self.roles = [roles.get(id(p)) for p in params]
        dist = net.action_dist
        self.norm = net.config.output_norm
        self.applies = (bool(recurrent) and None not in self.roles
                        and hasattr(dist, "log_prob_grad") and hasattr(dist, "entropy_grad")
                        and all(isinstance(m, torch.nn.Linear) for m in heads.values()))

    @torch.no_grad()
    def of(self, kinds: tuple[str, ...], x: Tensor, c: Tensor, logits: Tensor | None,
           action: Tensor | None) -> list[list[list]]:
        """Per stream, for each of ``kinds`` ("value" first if at all, then "log_prob", "entropy"), the gradients in
        ``params`` order as ``Gradients.of`` gives them on the fused path: (name, g_c) for a recurrent parameter, None
        where not reached.
        x (B,D): the core's input; c (B,N): its state c_t; logits (B,P) and action: the policy's, for its terms."""
        net, core, B = self.net, self.net.core, len(c)
        y = core.readout(x, c)
        _, dy_dc, direct = core.readout_derivatives(x, c)
        if self.norm:   # the heads read ŷ = (y − mean y) / σ, σ = sqrt(var y + ε) (F.layer_norm's, biased var)
            sigma = torch.sqrt(y.var(-1, unbiased=False, keepdim=True) + 1e-5)
            y = (y - y.mean(-1, keepdim=True)) / sigma
        dist, policy = net.action_dist, [kind for kind in kinds if kind != "value"]
        # s: ∂f/∂(head outputs) of each policy term (B,k,P); u = ∂f/∂y of every term (B,k,N), in kinds' order
        s = torch.stack([dist.log_prob_grad(logits, action) if kind == "log_prob" else dist.entropy_grad(logits)
                         for kind in policy], dim=1) if policy else None
        u = [] if policy == list(kinds) else [net.baseline.weight.expand(B, 1, -1)]
        u = torch.cat(u + ([s @ net.policy.weight] if policy else []), dim=1)
        if self.norm:   # ∂f/∂y = (u − mean u − ŷ mean(u ⊙ ŷ)) / σ: the LayerNorm's vector-Jacobian product
            u = (u - u.mean(-1, keepdim=True) - y[:, None] * (u * y[:, None]).mean(-1, keepdim=True)) / sigma[:, None]
        g_c = u if dy_dc is None else torch.bmm(u, dy_dc)                        # (B,k,N)
        readout = {name: u.reshape(*u.shape, *[1] * (d.dim() - 2)) * d[:, None] for name, d in direct.items()}
        heads = {"policy": (s[..., None] * y[:, None, None, :], s) if policy else None,
                 "baseline": (y[:, None, None, :], torch.ones(B, 1, 1, dtype=c.dtype, device=c.device))}
        out = []
        for b in range(B):
            row = []
            for i, kind in enumerate(kinds):
                head, j = ("baseline", 0) if kind == "value" else ("policy", i - (len(kinds) - len(policy)))
                grads = []
                for role, name in self.roles:
                    if role == "recurrent":
                        grads.append((name, g_c[b, i]))
                    elif role == "readout":
                        grads.append(readout[name][b, i])
                    elif role == head:
                        grads.append(heads[head][name == "bias"][b, j])
                    else:
                        grads.append(None)
                row.append(grads)
            out.append(row)
        return out
