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

import logging
import math
import traceback

import numpy as np
import torch
from torch import Tensor

from rtrl.algos.streaming import RunningReturnScale, decay_traces, obgd_steps, td_error
from rtrl.cells import project_parameters, recurrence_parameters
from rtrl.cells.engine import complete_pending
from rtrl.envs import EPISODE_FIELDS, EnvBatch, EnvSpec, env_seeds, episodes_from
from rtrl.models import ELEMENTWISE_CELLS, Agent
from rtrl.runtime.backends.errors import ActorFailures, last_failure
from rtrl.runtime.config import TrainConfig
from rtrl.runtime.experience import Experience
from rtrl.runtime.learners.gradients import Gradients, in_place_core
from rtrl.settings import SettingError
from rtrl.tree import map_tensors

log = logging.getLogger(__name__)


class StreamStep:
    """One step of B streams: the agent's outputs at s_t (with their autograd graph), the actions taken, and
    what followed them: r_{t+1}, done_{t+1}."""

    def __init__(self, policy_logits: Tensor, value: Tensor, action: Tensor, reward: Tensor, done: Tensor,
                 core_states: Tensor | None = None, sensitivity: dict[str, Tensor] | None = None,
                 inputs: tuple[Tensor, Tensor, Tensor] | None = None, core_input: Tensor | None = None,
                 cut: bool = False):
        self.policy_logits, self.value, self.action, self.reward, self.done = policy_logits, value, action, reward, done
        # what the agent read at s_t: o_t, r_t and whether o_t starts an episode (B,...) — a separate critic reads it
        self.inputs = inputs
        # the fused path (``in_place_core``): the core's state c_t (1,B,N), whose gradient the learner contracts
        # with the sensitivities S_t itself, and S itself (holding S_{t-1} until ``complete_pending``)
        self.core_states, self.sensitivity = core_states, sensitivity
        self.core_input = core_input   # x_t (B,D), what the core read: the closed-form gradients' readout needs it
        # the environments failed at this step and were replaced: no r_{t+1}, every stream's episode cut here
        self.cut = cut


def separate_critic(model: Agent, seed: int) -> Agent:
    """A network of the model's architecture for the critic alone, initialised from its own seed (the model's
    observation statistics normalise its input: it keeps none of its own)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        critic = Agent(model.obs_shape, model.obs_dtype, model.action_dist, model.config,
                       memory_limit=model.memory_limit, obs_norm=False)
    return critic.to(next(model.parameters()))


def critic_parameters(critic: Agent) -> list[Tensor]:
    """The parameters V depends on: all but the (unused) policy head's."""
    return [p for name, p in critic.named_parameters() if p.requires_grad and not name.startswith("policy")]


def _combine(log_prob_grad, entropy_grad, bonus: float):
    """∇log π + bonus · ∇H for one parameter (None: not reached; a (name, g_c) pair on the fused path)."""
    if log_prob_grad is None or entropy_grad is None:
        return log_prob_grad
    if isinstance(log_prob_grad, tuple):
        return log_prob_grad[0], log_prob_grad[1] + bonus * entropy_grad[1]
    return log_prob_grad.add(entropy_grad, alpha=bonus)


class StreamSource:
    """``num_envs`` environments stepped one step per ``next()`` with the learner's own model (``publish``
    has nothing to send). Observations' statistics (``obs_norm``) are updated with each step before it is used.
    Environments that raise are replaced by fresh ones, as a backend replaces a failed actor, up to
    ``max_actor_restarts`` times in a row — with no episode ended in between, so environments that fail before
    any episode ends (at every episode's third step, say) end the run — every stream then starts a new episode,
    and the step is marked ``cut``."""

    def __init__(self, cfg: TrainConfig, spec: EnvSpec, model: Agent):
        B = cfg.num_envs
        self.cfg, self.spec, self.model = cfg, spec, model
        self.failures = ActorFailures(1, cfg.max_actor_restarts)
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
        read = (obs, self.reward.to(device), self.done.to(device))
        inputs = (*(x[None] for x in read), self.state)
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
        try:
            obs, reward, done, episodes = self.envs.step(action.numpy())
            cut = False
        except Exception:
            obs, reward, done, episodes = self._replace_envs(traceback.format_exc())
            cut = True
        self.obs, self.done = torch.as_tensor(obs).clone(), torch.as_tensor(done)
        self.reward = torch.as_tensor(reward, dtype=torch.float32)
        ended = ~np.isnan(episodes[:, 0])
        if ended.any():   # recovered: an actor's count resets with each rollout, the streams' with an episode ended
            self.failures.delivered(0)
        step = StreamStep(logits, value, action.to(device), self.reward, self.done, core_states,
                          self.state.sensitivity if self.fused else None, read, out.core_input[0], cut)
        return Experience(step, len(action), episodes_from(*episodes[ended].T))

    @property
    def actor_restarts(self) -> int:
        """Environment replacements since the source started (what a backend counts as actor restarts)."""
        return self.failures.restarts

    def _replace_envs(self, report: str):
        """Fresh environments on a new seed stream after a failure (``ActorError`` past ``max_actor_restarts``):
        what a step of them gives — their first observations, no reward, every stream at an episode start."""
        stream = self.failures.failed(0, report)
        log.warning("the environments raised (%s); replaced by fresh ones (%d in a row, max_actor_restarts=%d): every "
                    "stream starts a new episode", last_failure(report), self.failures.in_a_row[0],
                    self.failures.max_restarts)
        try:
            self.envs.close()
        except Exception:   # a broken environment may fail to close too; its replacement is what matters
            pass
        cfg, B = self.cfg, self.cfg.num_envs
        self.envs = EnvBatch(cfg.env, cfg.env_options, env_seeds(cfg.seed, stream, B, cfg.resumed_at_step),
                             env_fn=self.spec.env_fn)
        return (self.envs.obs, np.zeros(B, np.float32), np.ones(B, bool),
                np.full((B, len(EPISODE_FIELDS)), np.nan, np.float32))

    def publish(self, model: Agent) -> None:
        """Nothing to send: the source acts with the learner's model itself."""

    def close(self) -> None:
        self.envs.close()


def obgd_groups(params: list[Tensor], net: torch.nn.Module, bound: str) -> list[list[int]]:
    """The groups of ``params`` (indices) that ObGD bounds apart: all in one (``joint``), or the rest first and then
    the cells' recurrence parameters in ``net`` (``recurrence``; a core without any is refused by name)."""
    if bound == "joint":
        return [list(range(len(params)))]
    apart = {id(p) for p in recurrence_parameters(net)}
    if not apart:
        raise SettingError(f"obgd_bound={bound!r} bounds the recurrence's own parameters apart; the network has no "
                           f"element-wise cell (accepted: joint, or a core of {', '.join(ELEMENTWISE_CELLS)} cells)")
    groups = [[i for i, p in enumerate(params) if id(p) not in apart], [i for i, p in enumerate(params) if id(p) in apart]]
    return [group for group in groups if group]


class StreamLearner:
    """Stream AC(λ): a critic trace (of ∇V) and an actor trace (of ∇[log π + β sign(δ) H]; with ``entropy_step``
    direct, of ∇log π alone, the entropy taking a step α·β·∇H of its own at every step) per stream and
    parameter, each stepped by ObGD with its own κ — over the agent's shared network (``critic`` shared), or
    with V from a network of its own (``critic`` separate, as Stream AC(λ) has: ``separate_critic``, stepped here
    on what the actor read, with its own recurrent state and sensitivities). With ``reward_norm``
    the TD error's rewards are divided by the running std of each stream's discounted return, as Stream AC(λ)
    does — not by the model's ``RewardScaler`` that the IMPALA learner uses: on delayed recall that scale
    (the RMS of a return of independent rewards, ~13 there) shrank the rewards so far that one stream did not
    learn in 5,000 steps, where the return's std (~0.5) lets it learn by ~3,500 (docs/STREAMING.md)."""

    metrics = ("td_error", "value", "entropy", "step_size_value", "step_size_policy", "trace_norm")

    def __init__(self, model: Agent, cfg: TrainConfig):
        self.model, self.cfg = model, cfg
        B = cfg.num_envs
        self.actor = Gradients(model, [p for p in model.parameters() if p.requires_grad])
        self.params = self.actor.params
        self.critic = separate_critic(model, cfg.seed) if cfg.critic == "separate" else None
        self.critic_state = None if self.critic is None else self.critic.initial_state(B)
        self.value_net = self.actor if self.critic is None else Gradients(self.critic, critic_parameters(self.critic))
        self.value_params = self.value_net.params
        self.value_traces = [[torch.zeros_like(p) for p in self.value_params] for _ in range(B)]
        self.policy_traces = [[torch.zeros_like(p) for p in self.params] for _ in range(B)]
        # entropy_step direct: per stream, ∇H of each parameter for this step's entropy step (on the fused path the
        # recurrent ones are folded from S into these, zeroed first; the others are pointed at the pending ∇H)
        self.entropy_grads = ([[torch.zeros_like(p) for p in self.params] for _ in range(B)]
                              if cfg.entropy_step == "direct" else None)
        # ObGD's bound per group of each network's parameters (indices into its list): one group, or the recurrence's
        # own parameters apart from the rest (obgd_bound recurrence); the rest come first, their step is the one logged
        self.value_groups = obgd_groups(self.value_params, model if self.critic is None else self.critic,
                                        cfg.obgd_bound)
        self.policy_groups = obgd_groups(self.params, model, cfg.obgd_bound)
        self.pending: list | None = None   # per stream: (V_{t-1}, g_V, g_logπ, g_H) of the last step
        self.scale = RunningReturnScale(B, cfg.discounting) if cfg.reward_norm else None

    @property
    def fused(self) -> bool:
        return self.actor.fused

    def _gradients(self, step: StreamStep) -> list[tuple[float, list, list, list]]:
        """Per stream: V_t and the gradients of V_t, log π(a_t|s_t) and H(π(·|s_t)) — V_t's w.r.t. the value
        parameters (the model's, or a separate critic's), the others w.r.t. the model's. On a fused path, for a
        recurrent parameter, the entry is (its name, its coefficient g_c = ∂f/∂c_t (N,)): the gradient is then
        g_c ⊙ S_t, which ``_step`` folds into the traces straight from S (no gradient goes through the engine)."""
        dist, logits, action = self.model.action_dist, step.policy_logits, step.action   # any distribution
        log_prob = dist.log_prob(logits, action)
        entropy = dist.entropy(logits)
        self.last_entropy = float(entropy.detach().mean())
        kinds = ("value", "log_prob", "entropy") if self.critic is None else ("log_prob", "entropy")
        if self.actor.closed_form:
            actor = self.actor.heads.of(kinds, step.core_input, step.core_states[0], logits.detach(), action)
        else:
            actor = self.actor.of((step.value, log_prob, entropy)[-len(kinds):], step.core_states)
        if self.critic is None:
            return [(float(step.value[b].detach()), *grads) for b, grads in enumerate(actor)]
        value, critic_states, x = self._critic_value(step)
        values = (self.value_net.heads.of(("value",), x, critic_states[0], None, None) if self.value_net.closed_form
                  else self.value_net.of((value,), critic_states))
        return [(float(value[b].detach()), *values[b], *actor[b]) for b in range(len(value))]

    def _critic_value(self, step: StreamStep) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """V(s_t) (B,) of the separate critic, one step on from its own state on what the actor read (the
        observation normalised by the model's statistics), and on the fused path its c_t (1,B,N) (S_t pending) and
        its core's input x_t (B,D)."""
        obs, reward, done = step.inputs
        if self.model.obs_norm is not None:
            obs = self.model.obs_norm(obs)
        inputs = (obs[None], reward[None], done[None], self.critic_state)
        if self.value_net.fused:
            out, core_states, self.critic_state = self.critic.step_in_place(*inputs)
            return out.baseline[0], core_states, out.core_input[0]
        out, state = self.critic(*inputs)
        self.critic_state = map_tensors(Tensor.detach, state)
        return out.baseline[0], None, None

    def update(self, experience: Experience, steps_done: int) -> dict:
        step: StreamStep = experience.data
        cfg, decay = self.cfg, self.cfg.discounting * self.cfg.trace_decay
        grads = self._gradients(step)
        stats = {"value": float(np.mean([g[0] for g in grads])), "entropy": self.last_entropy}   # the critic's V
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
        return {**stats, "nonfinite": [] if math.isfinite(stats.get("trace_norm", 0.0)) else ["trace_norm"]}

    def _follow(self, step: StreamStep) -> None:
        """What followed step t, δ_t's terms: r_{t+1} (scaled) and done_{t+1}; and, on a fused path, S_t
        written over S_{t-1} now that the traces have read S_{t-1} (a no-op where ``_step`` wrote it)."""
        for sensitivity in self._sensitivities(step):
            complete_pending(sensitivity)
        if step.cut:   # no outcome of this step to learn from, and every stream's episode was cut: traces end
            self.pending = None
            for traces in self.value_traces + self.policy_traces:
                torch._foreach_zero_(traces)
        self.done = step.done.cpu()
        self.reward = step.reward.cpu() if self.scale is None else self.scale(step.reward.cpu(), self.done)

    def _sensitivities(self, step: StreamStep) -> list[dict[str, Tensor]]:
        """The S kept in place: the model's (from the source) and a separate fused critic's."""
        found = [] if step.sensitivity is None else [step.sensitivity]
        if self.critic is not None and self.value_net.fused:
            found.append(self.critic_state.sensitivity)
        return found

    @torch.no_grad()
    def _step(self, delta: Tensor, decay: float, sensitivity: dict[str, Tensor] | None) -> tuple[float, float, float]:
        """Fold the pending gradients into each stream's traces and take its ObGD steps (streams in turn);
        ``sensitivity``: on the fused path, S (still S_{t-1}) for the recurrent parameters' gradients, folded into
        the traces of every stream in the one pass that writes S_t over it (``complete_pending`` with folds; a
        separate critic's S likewise)."""
        cfg, sizes = self.cfg, []
        direct = self.entropy_grads is not None
        if direct:   # the actor's trace takes ∇log π alone; the entropy steps on its own below
            policy_grads = [pending[2] for pending in self.pending]
        else:   # β sign(δ): the entropy term pulls with the TD error (Stream AC(λ))
            bonuses = [cfg.entropy_cost * math.copysign(1.0, float(d)) for d in delta]
            policy_grads = [[_combine(lp, h, bonus) for lp, h in zip(pending[2], pending[3])]
                            for pending, bonus in zip(self.pending, bonuses)]
        value_grads = [pending[1] for pending in self.pending]
        value_folds = self.value_net.folds(value_grads, self.value_traces) if self.value_net.fused else {}
        entropy_grads = self._entropy_grads() if direct else None
        if sensitivity is not None:
            folds = self.actor.folds(policy_grads, self.policy_traces)
            if direct:   # ∇H of the recurrent parameters, g_c ⊙ S, into the zeroed buffers in the same pass
                entropy_folds = self.actor.folds([pending[3] for pending in self.pending], self.entropy_grads)
                folds = {name: pair + entropy_folds[name] for name, pair in folds.items()}
            if self.critic is None:   # the shared network's value trace too, in the same pass
                folds = {name: value_folds[name] + pair for name, pair in folds.items()}
            complete_pending(sensitivity, folds, decay)
        if self.critic is not None and self.value_net.fused:
            complete_pending(self.critic_state.sensitivity, value_folds, decay)
        for b in range(len(self.pending)):
            d = float(delta[b])
            self._fold(self.value_traces[b], value_grads[b], decay)
            self._fold(self.policy_traces[b], policy_grads[b], decay)
            value_alphas, value_norm = obgd_steps(self.value_params, self.value_traces[b], self.value_groups,
                                                  cfg.stream_lr, cfg.kappa_value, d)
            policy_alphas, policy_norm = obgd_steps(self.params, self.policy_traces[b], self.policy_groups,
                                                    cfg.stream_lr, cfg.kappa_policy, d)
            if direct:   # the entropy's own step, at the actor's step size (of each group), whatever δ is
                for group, alpha in zip(self.policy_groups, policy_alphas):
                    reached = [(self.params[i], entropy_grads[b][i]) for i in group if entropy_grads[b][i] is not None]
                    torch._foreach_add_([p for p, _ in reached], [g for _, g in reached], alpha=alpha * cfg.entropy_cost)
            if bool(self.done[b]):   # the episode ended with this transition: its traces end with it
                torch._foreach_zero_(self.value_traces[b] + self.policy_traces[b])
            sizes.append((value_alphas[0], policy_alphas[0], value_norm + policy_norm))   # the rest's (heads') steps
        for net in (self.model, self.critic):
            if net is not None:
                project_parameters(net)
        return tuple(float(np.mean(column)) for column in zip(*sizes))

    def _entropy_grads(self) -> list[list]:
        """Per stream, ∇H of the pending step for each parameter (None: not reached): the pending gradient
        itself, or, for a recurrent parameter of the fused path, its buffer (zeroed here; the pass over S
        writes g_c ⊙ S into it with the traces)."""
        grads = []
        for pending, buffers in zip(self.pending, self.entropy_grads):
            row = []
            for g, buffer in zip(pending[3], buffers):
                if isinstance(g, tuple):
                    buffer.zero_()
                    row.append(buffer)
                else:
                    row.append(g)
            grads.append(row)
        return grads

    @staticmethod
    def _fold(traces: list[Tensor], grads: list, decay: float) -> None:
        """z ← decay · z + g for every parameter but the recurrent ones of the fused path ((name, g_c) entries:
        their traces were updated from S in the pass over it)."""
        plain = [(z, g) for z, g in zip(traces, grads) if not isinstance(g, tuple)]
        decay_traces([z for z, _ in plain], [g for _, g in plain], decay)

    def state_dict(self) -> dict:
        """The reward scale's statistics, the traces of the moment and a separate critic's weights (the
        observation statistics are the model's buffers). ObGD keeps no state of its own: its step size is computed
        afresh at every step."""
        return {"value_traces": self.value_traces, "policy_traces": self.policy_traces,
                "reward_scale": None if self.scale is None else self.scale.state_dict(),
                "critic": None if self.critic is None else self.critic.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """The reward scale's statistics and a separate critic's weights. The traces are not restored: a resumed
        run's streams start new episodes (environments cannot be saved), and a trace belongs to the episode it was
        gathered in."""
        if self.scale is not None and state.get("reward_scale") is not None:
            self.scale.load_state_dict(state["reward_scale"])
        if self.critic is not None and state.get("critic") is not None:   # a shared run resumed separate: a new one
            self.critic.load_state_dict(state["critic"])
