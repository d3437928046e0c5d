"""The streaming learner (``--learner stream``): an update at every environment step, batch size 1 per stream,
no rollouts, no replay, no truncation (docs/STREAMING.md; the equations: ``rtrl.algos.streaming``).

``StreamSource`` steps ``num_envs`` independent streams in the learner's process. It carries the core's
*full* state (c and, with ``learning rtrl``, the sensitivities S) and advances it one step per call with
autograd on, so the outputs it hands over hold the exact gradient of V(s_t) and log π(a_t|s_t) through the
whole history since the stream's last reset (the engine's T = 1 call; with ``tbptt`` the gradient stops
at the step: streaming TBPTT(1)). ``StreamLearner`` turns them into per-stream eligibility traces of all
parameters and, once the next step's value gives the TD error, into an ObGD step:

    step t:   source: V_t, π_t from (c_{t-1}, S_{t-1}) and o_t;  a_t ~ π_t;  r_{t+1}, done_{t+1}, o_{t+1}
              learner: g_t = ∇V_t, ∇log π(a_t), ∇H(π_t)  (per stream)
              and for the pending step t-1: δ_{t-1} = r_t + γ(1 − done_t) V_t − V_{t-1};
              z ← γλ z + g_{t-1};  θ ← θ + α_{t-1} δ_{t-1} z  (critic and actor traces, ObGD each)

so V_t enters δ_{t-1} with the weights it was computed with (one step before the update: the usual online
form). Traces are zeroed when an episode ends; the source zeroes c and S at the next episode's first step.
Truncated episodes are treated as ended, as the IMPALA learner does.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from rtrl.algos.streaming import RunningReturnScale, decay_traces, obgd_step_size, td_error, trace_l1
from rtrl.cells.engine import complete_pending
from rtrl.envs import EnvBatch, EnvSpec, env_seeds, episodes_from
from rtrl.models import Agent
from rtrl.runtime.config import TrainConfig
from rtrl.runtime.experience import Experience
from rtrl.tree import map_tensors


# at most this many gradient elements per batched backward call of the fused path (64 MB in float32)
BATCHED_GRAD_ELEMENTS = 1 << 24


class StreamStep:
    """One step of B streams: the agent's outputs at s_t (with their autograd graph), the actions taken, and
    what followed them: r_{t+1}, done_{t+1}."""

    def __init__(self, policy_logits: Tensor, value: Tensor, action: Tensor, reward: Tensor, done: Tensor,
                 core_states: Tensor | None = None, sensitivity: dict[str, Tensor] | None = None):
        self.policy_logits, self.value, self.action, self.reward, self.done = policy_logits, value, action, reward, done
        # the fused path (``in_place_core``): the core's state c_t (1,B,N), whose gradient the learner contracts
        # with the sensitivities S_t itself, and S itself (holding S_{t-1} until ``complete_pending``)
        self.core_states, self.sensitivity = core_states, sensitivity


def in_place_core(model: Agent) -> bool:
    """Whether the stream can keep its sensitivities in place and the learner take the recurrent gradients from
    them (g ⊙ S_t, fused into the traces): a single-layer, one-channel element-wise cell trained by RTRL whose
    inputs come from parameter-free parts (identity stem, no feature norm), so that no gradient has to flow
    back through the engine. Otherwise every gradient goes through autograd and the engine's backward."""
    core = model.core
    return (getattr(core, "learning", None) == "rtrl" and hasattr(core, "run_in_place")
            and getattr(core, "channels", 1) == 1 and model.feature_norm is None
            and not any(True for _ in model.stem.parameters()))


def _combine(log_prob_grad, entropy_grad, bonus: float):
    """∇log π + bonus · ∇H for one parameter (None: not reached; a (name, g_c) pair on the fused path)."""
    if log_prob_grad is None or entropy_grad is None:
        return log_prob_grad
    if isinstance(log_prob_grad, tuple):
        return log_prob_grad[0], log_prob_grad[1] + bonus * entropy_grad[1]
    return log_prob_grad.add(entropy_grad, alpha=bonus)


class StreamSource:
    """``num_envs`` environments stepped one step per ``next()`` with the learner's own model (``publish``
    has nothing to send). Observations' statistics (``obs_norm``) are updated with each step before it is used."""

    def __init__(self, cfg: TrainConfig, spec: EnvSpec, model: Agent):
        B = cfg.num_envs
        self.model, self.actor_restarts = model, 0
        self.device = next(model.parameters()).device
        seeds = env_seeds(cfg.seed, 0, B, cfg.resumed_at_step)   # a resumed run: fresh episodes and actions
        self.envs = EnvBatch(cfg.env, cfg.env_options, seeds, env_fn=spec.env_fn)
        self.generator = torch.Generator().manual_seed(seeds[0] if cfg.resumed_at_step else cfg.seed)
        self.obs = torch.as_tensor(self.envs.obs).clone()
        self.reward, self.done = torch.zeros(B), torch.ones(B, dtype=torch.bool)   # the first step starts episodes
        self.state = model.initial_state(B)
        self.fused = in_place_core(model)

    def next(self) -> Experience:
        model, device = self.model, self.device
        obs = self.obs.to(device)
        if model.obs_norm is not None:
            model.obs_norm.update(obs)
        inputs = (obs[None], self.reward[None].to(device), self.done[None].to(device), self.state)
        core_states = None
        if self.fused:   # S_{t-1} -> S_t in place, written once the learner has read S_{t-1}
            out, core_states, state = model.step_in_place(*inputs)
        else:
            out, state = model(*inputs)
        # RTRL's state carries no graph (on the fused path its S tensors must stay the very objects the engine
        # marked for the pending write); TBPTT(1) stops here
        self.state = state if self.fused else map_tensors(Tensor.detach, state)
        logits, value = out.policy_logits[0], out.baseline[0]
        action = model.action_dist.sample(logits.detach().cpu().float(), self.generator)
        obs, reward, done, episodes = self.envs.step(action.numpy())
        self.obs, self.done = torch.as_tensor(obs).clone(), torch.as_tensor(done)
        self.reward = torch.as_tensor(reward, dtype=torch.float32)
        ended = ~np.isnan(episodes[:, 0])
        step = StreamStep(logits, value, action.to(device), self.reward, self.done, core_states,
                          self.state.sensitivity if self.fused else None)
        return Experience(step, len(action), episodes_from(*episodes[ended].T))

    def publish(self, model: Agent) -> None:
        """Nothing to send: the source acts with the learner's model itself."""

    def close(self) -> None:
        self.envs.close()


class StreamLearner:
    """Stream AC(λ) over the agent's shared network: a critic trace (of ∇V) and an actor trace (of
    ∇[log π + β sign(δ) H]) per stream and parameter, each stepped by ObGD with its own κ. With ``reward_norm``
    the TD error's rewards are divided by the running std of each stream's discounted return, as Stream AC(λ)
    does — not by the model's ``RewardScaler`` that the IMPALA learner uses: on delayed recall that scale
    (the RMS of a return of independent rewards, ~13 there) shrank the rewards so far that one stream did not
    learn in 5,000 steps, where the return's std (~0.5) lets it learn by ~3,500 (docs/STREAMING.md)."""

    metrics = ("td_error", "value", "entropy", "step_size_value", "step_size_policy", "trace_norm")

    def __init__(self, model: Agent, cfg: TrainConfig):
        self.model, self.cfg = model, cfg
        self.params = [p for p in model.parameters() if p.requires_grad]
        B = cfg.num_envs
        self.value_traces = [[torch.zeros_like(p) for p in self.params] for _ in range(B)]
        self.policy_traces = [[torch.zeros_like(p) for p in self.params] for _ in range(B)]
        self.pending: list | None = None   # per stream: (V_{t-1}, g_V, g_logπ, g_H) of the last step
        self.scale = RunningReturnScale(B, cfg.discounting) if cfg.reward_norm else None
        # the fused path: the recurrent parameters' gradients are g_c ⊙ S_t, folded into the traces from S itself
        self.fused = in_place_core(model)
        core = model.core
        self.recurrent = {id(p): name for name, p in (("weight_x", core.weight_x), ("weight_c", core.weight_c),
                          ("bias", core.bias), ("per_unit", core.per_unit)) if p is not None} if self.fused else {}
        self.others = [p for p in self.params if id(p) not in self.recurrent]

    def _gradients(self, step: StreamStep) -> list[tuple[float, list, list, list]]:
        """Per stream: V_t and the gradients of V_t, log π(a_t|s_t) and H(π(·|s_t)) w.r.t. every parameter —
        on the fused path, for a recurrent parameter, its coefficient g_c = ∂f/∂c_t (N,): the gradient is then
        g_c ⊙ S_t, which ``_step`` folds into the traces straight from S (no gradient goes through the engine)."""
        dist = self.model.action_dist   # categorical, multi-categorical or diagonal Gaussian
        log_prob = dist.log_prob(step.policy_logits, step.action)
        entropy = dist.entropy(step.policy_logits)
        out, B = [], len(step.value)
        self.last_entropy = float(entropy.detach().mean())
        if self.fused:   # the 3·B gradients in batched backward calls (vmap over the grad outputs; 4.7x the loop's
            # speed at B = 4, 1.2x at B = 1). The engine is not in this graph, so nothing needs a vmap rule. Streams
            # go in chunks: each batched output holds all of c_t (B,N), so one call for all B would grow as B².
            losses = torch.stack((step.value, log_prob, entropy))                       # (3, B)
            inputs = [step.core_states] + self.others
            chunk = max(1, BATCHED_GRAD_ELEMENTS // (3 * sum(t.numel() for t in inputs)))
            for b0 in range(0, B, chunk):
                streams = range(b0, min(B, b0 + chunk))
                c = len(streams)
                basis = torch.zeros(3 * c, 3, B, dtype=losses.dtype, device=losses.device)
                for i in range(3):
                    for j, b in enumerate(streams):
                        basis[i * c + j, i, b] = 1
                batched = torch.autograd.grad(losses, inputs, grad_outputs=basis, allow_unused=True,
                                              retain_graph=streams.stop < B, is_grads_batched=True)
                for j, b in enumerate(streams):
                    grads = [self._aligned(batched[0][i * c + j, 0, b],
                                           [None if g is None else g[i * c + j] for g in batched[1:]])
                             for i in range(3)]
                    out.append((float(step.value[b].detach()), *grads))
            return out
        for b in range(B):
            last = b == B - 1
            grads = [torch.autograd.grad(f[b], self.params, retain_graph=not (last and i == 2), allow_unused=True)
                     for i, f in enumerate((step.value, log_prob, entropy))]
            out.append((float(step.value[b].detach()), *grads))
        return out

    def _aligned(self, coefficient: Tensor, others: tuple) -> list:
        """The fused path's gradients in ``params`` order: a recurrent parameter's entry is (its name, g_c)."""
        rest = iter(others)
        return [(self.recurrent[id(p)], coefficient) if id(p) in self.recurrent else next(rest) for p in self.params]

    def update(self, experience: Experience, steps_done: int) -> dict:
        step: StreamStep = experience.data
        cfg, decay = self.cfg, self.cfg.discounting * self.cfg.trace_decay
        grads = self._gradients(step)
        stats = {"value": float(step.value.detach().mean()), "entropy": self.last_entropy}
        if self.pending is not None:
            values = torch.tensor([g[0] for g in grads], dtype=torch.float64)
            previous = torch.tensor([p[0] for p in self.pending], dtype=torch.float64)
            delta = td_error(self.reward.double(), self.done, previous, values, cfg.discounting)
            if not bool(delta.isfinite().all()):
                self.pending = grads
                self._follow(step)
                return {**stats, "td_error": math.nan, "nonfinite": ["td_error"]}
            sizes = self._step(delta, decay, step.sensitivity)
            stats.update(td_error=float(delta.abs().mean()), step_size_value=sizes[0], step_size_policy=sizes[1],
                         trace_norm=sizes[2])
        self.pending = grads
        self._follow(step)
        return {**stats, "nonfinite": []}

    def _follow(self, step: StreamStep) -> None:
        """What followed step t, δ_t's terms: r_{t+1} (scaled) and done_{t+1}; and, on the fused path, S_t
        written over S_{t-1} now that the traces have read S_{t-1}."""
        if step.sensitivity is not None:
            complete_pending(step.sensitivity)
        self.done = step.done.cpu()
        self.reward = step.reward.cpu() if self.scale is None else self.scale(step.reward.cpu(), self.done)

    @torch.no_grad()
    def _step(self, delta: Tensor, decay: float, sensitivity: dict[str, Tensor] | None) -> tuple[float, float, float]:
        """Fold the pending gradients into each stream's traces and take its ObGD steps (streams in turn);
        ``sensitivity``: on the fused path, S (still S_{t-1}) for the recurrent parameters' gradients, folded into
        the traces of every stream in the one pass that writes S_t over it (``complete_pending`` with folds)."""
        cfg, sizes = self.cfg, []
        # β sign(δ): the entropy term pulls with the TD error
        bonuses = [cfg.entropy_cost * math.copysign(1.0, float(d)) for d in delta]
        policy_grads = [[_combine(lp, h, bonus) for lp, h in zip(pending[2], pending[3])]
                        for pending, bonus in zip(self.pending, bonuses)]
        if sensitivity is not None:
            complete_pending(sensitivity, self._recurrent_folds(policy_grads), decay)
        for b, (_, g_value, _, _) in enumerate(self.pending):
            d = float(delta[b])
            self._fold(self.value_traces[b], g_value, decay)
            self._fold(self.policy_traces[b], policy_grads[b], decay)
            norms = trace_l1(self.value_traces[b]), trace_l1(self.policy_traces[b])
            alphas = (obgd_step_size(cfg.stream_lr, cfg.kappa_value, d, norms[0]),
                      obgd_step_size(cfg.stream_lr, cfg.kappa_policy, d, norms[1]))
            for traces, alpha in ((self.value_traces[b], alphas[0]), (self.policy_traces[b], alphas[1])):
                torch._foreach_add_(self.params, traces, alpha=alpha * d)
            if bool(self.done[b]):   # the episode ended with this transition: its traces end with it
                torch._foreach_zero_(self.value_traces[b] + self.policy_traces[b])
            sizes.append((*alphas, norms[0] + norms[1]))
        return tuple(float(np.mean(column)) for column in zip(*sizes))

    def _recurrent_folds(self, policy_grads: list[list]) -> dict:
        """Per recurrent parameter (by its sensitivity's name): the value and policy traces of every stream with
        their coefficients g_c (B,N), for z_b ← decay · z_b + g_c[b] ⊙ S[b] in the pass over S."""
        folds, streams = {}, range(len(self.pending))
        for i, p in enumerate(self.params):
            name = self.recurrent.get(id(p))
            if name is not None:
                folds[name] = [(torch.stack([self.pending[b][1][i][1] for b in streams]),
                                [self.value_traces[b][i] for b in streams]),
                               (torch.stack([policy_grads[b][i][1] for b in streams]),
                                [self.policy_traces[b][i] for b in streams])]
        return folds

    @staticmethod
    def _fold(traces: list[Tensor], grads: list, decay: float) -> None:
        """z ← decay · z + g for every parameter but the recurrent ones of the fused path ((name, g_c) entries:
        their traces were updated from S in the pass over it)."""
        plain = [(z, g) for z, g in zip(traces, grads) if not isinstance(g, tuple)]
        decay_traces([z for z, _ in plain], [g for _, g in plain], decay)

    def state_dict(self) -> dict:
        """The reward scale's statistics and the traces of the moment (the observation statistics are the
        model's buffers). ObGD keeps no state of its own: its step size is computed afresh at every step."""
        return {"value_traces": self.value_traces, "policy_traces": self.policy_traces,
                "reward_scale": None if self.scale is None else self.scale.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """The reward scale's statistics. The traces are not restored: a resumed run's streams start new
        episodes (environments cannot be saved), and a trace belongs to the episode it was gathered in."""
        if self.scale is not None and state.get("reward_scale") is not None:
            self.scale.load_state_dict(state["reward_scale"])
