"""One config object per run: every setting of `rtrl train`, with its default and what it means.

Resolution order: dataclass defaults < a preset < a settings file (TOML, YAML or JSON) < explicit
settings (``resolve_config``). The command line turns each field into a flag (``rtrl.cli.flags``).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import torch

from rtrl.algos import LossConfig
from rtrl.envs import EnvSpec
from rtrl.cells.stacked import available_memory, format_bytes
from rtrl.models import (ELEMENTWISE_CELLS, Agent, ModelConfig, norm_unbounded_outputs, refuse_unread_model_settings,
                         upgrade_core_alias)
from rtrl.runtime.devices import check_device, cpu_count
from rtrl.runtime.presets import PRESETS  # the presets' table, kept in a module of its own; resolve_config applies it
from rtrl.runtime.sizes import check_train, check_train_config, model_sizes, value_tower
from rtrl.settings import (LEARNING_RATE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, SEED,
                           UNIT_INTERVAL, Check, SettingError, from_dict, is_finite_number, literal, load_settings_file,
                           setting, validate)

S = setting
# ranges the code can run: memory counted in GiB below 2**20 (a PiB); the model's own ranges are in
# rtrl.models.config, the learning rate's in rtrl.settings
# a loss term's weight: above float32's range the stream learner's step could not take it (an 'unexpected
# RuntimeError'); far below, every update is non-finite already
LOSS_WEIGHT = Check("a finite number >= 0 up to 1e30", lambda v: is_finite_number(v) and 0 <= v <= 1e30)
MEMORY_GIB = Check("a finite number >= 0 and below 2**20 (GiB)", lambda v: is_finite_number(v) and 0 <= v < 2 ** 20)
MAX_BUFFERS = 4096
BUFFERS = Check(f"0 or a positive integer up to {MAX_BUFFERS}",
                lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_BUFFERS)
THREADS = Check(f"a positive integer, at most {cpu_count()} (the CPUs of this machine)",
                lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= cpu_count())
# W&B refuses these characters in a project name, and names over 128 characters
WANDB_PROJECT = Check("a W&B project name: at most 128 characters, none of / \\ # ? % :",
                      lambda v: isinstance(v, str) and len(v) <= 128 and not set(v) & set("/\\#?%:"))
log = logging.getLogger(__name__)
BACKENDS = ("local", "ray")
LEARNERS = ("impala", "stream")   # rtrl.runtime.learners.LEARNERS holds what each one is
# the settings only one learner reads (impala: rollouts, batches, actors, RMSprop, the loss; stream: its streams, ObGD,
# traces, critic): given for the other with a value it would not otherwise have, refused by name (resolve_config)
LEARNER_SETTINGS = {
    "impala": ("unroll_length", "batch_size", "num_actors", "envs_per_actor", "num_buffers", "lr", "rmsprop_alpha",
               "rmsprop_eps", "grad_norm_clip", "baseline_cost", "reward_clip", "normalize_advantages",
               "update_epochs", "minibatches", "policy_clip", "vtrace_lambda", "backend", "ray_address",
               "actor_cpus", "rollouts_in_flight", "broadcast_interval"),
    "stream": ("num_envs", "stream_lr", "trace_decay", "kappa_value", "kappa_policy", "entropy_step", "obgd_bound"),
}


@dataclass
class TrainConfig(ModelConfig):
    """Every setting of a training run: the model's (``ModelConfig``, inherited: cell, learning, sizes, stem,
    init) and the run's below."""

    learner: str = S("impala", "the learning algorithm: impala (R2AC: actors fill rollouts, the learner takes "
                     "V-trace steps on each batch of them: one by default), stream (an update at every environment "
                     "step of each of num_envs streams: Stream AC(lambda) with ObGD; docs/STREAMING.md)",
                     choices=LEARNERS)
    env: str = S("memory:delayed_recall", "environment id, prefix:name[?key=value&...] (see rtrl.envs)")
    total_steps: int = S(1_000_000, "agent steps (env steps over all actors) to train for", check=POSITIVE_INT)
    unroll_length: int = S(10, "T: steps per rollout (each rollout holds T+1, step 0 repeats)", check=POSITIVE_INT)
    batch_size: int = S(32, "B: rollouts per learner update", check=POSITIVE_INT)
    sensitivity_memory_gib: float = S(0.0, "GiB the RTRL sensitivities of all environments, rollout buffers and "
                                      "the learner's batch may take; 0: what the machine has available "
                                      "(MemAvailable) at the start", check=MEMORY_GIB)
    num_actors: int = S(2, "actor processes (0: step the environments inline in the learner)", check=NON_NEGATIVE_INT)
    envs_per_actor: int = S(16, "environments stepped together by one actor (batch_size % this == 0)",
                            check=POSITIVE_INT)
    num_buffers: int = S(0, "shared rollout buffers (0: 2 x num_actors, at least batch/envs + 1)",
                         check=BUFFERS)
    lr: float = S(2e-3, "RMSprop learning rate, decayed linearly to 0 over the run (paper: 6e-4)", check=LEARNING_RATE)
    rmsprop_alpha: float = S(0.99, "RMSprop smoothing constant", check=UNIT_INTERVAL)
    rmsprop_eps: float = S(0.01, "RMSprop epsilon", check=POSITIVE)
    update_epochs: int = S(1, "with learner impala: passes the learner makes over each batch (K > 1 reuses the "
                           "experience, as PPO and RLlib's or Sample Factory's IMPALA/APPO can; give policy_clip "
                           "with it: without, 4 passes of 4 minibatches diverged on Hopper; the paper: 1)",
                           check=POSITIVE_INT)
    minibatches: int = S(1, "with learner impala: gradient steps per pass, each on batch_size/M of the batch's "
                         "rollouts (one more in some when M does not divide it; reshuffled every pass; M at most "
                         "batch_size)", check=POSITIVE_INT)
    policy_clip: float = S(0.0, "with learner impala: epsilon of PPO's clipped surrogate, taken against the actors' "
                           "policy with V-trace's advantages (APPO, as Sample Factory and RLlib have it): bounds "
                           "how far update_epochs and minibatches move the policy on one batch; 0: IMPALA's "
                           "policy gradient", check=Check("0 (off) or a number in (0, 1)",
                                                           lambda v: is_finite_number(v) and 0 <= v < 1))
    vtrace_lambda: float = S(1.0, "with learner impala: V-trace's lambda on every trace coefficient (IMPALA's Remark 2; "
                             "below 1: less variance, more bias, as GAE's lambda, 0.95 in PPO)", check=UNIT_INTERVAL)
    grad_norm_clip: float = S(40.0, "global gradient-norm clip (RTRL gradients included)", check=POSITIVE)
    discounting: float = S(0.99, "discount factor gamma", check=UNIT_INTERVAL)
    baseline_cost: float = S(0.5, "weight of the baseline loss", check=LOSS_WEIGHT)
    entropy_cost: float = S(0.01, "weight of the entropy loss", check=LOSS_WEIGHT)
    reward_clip: bool = S(True, "clip rewards to [-1, 1] for the loss")
    normalize_advantages: bool = S(False, "standardise the policy-gradient advantages over each batch (mean 0, "
                                   "std 1; as PPO does, not IMPALA). Avoid it with the env option previous_action=true: on the "
                                   "memory suite that pair collapsed the policy's entropy (docs/MEMORY_SUITE.md)")
    seed: int = S(0, "seeds the model init, the actors' environments and sampling", check=SEED)
    device: str = S("cpu", "learner device (cpu, cuda, cuda:1, mps); actors always run on the CPU")
    learner_threads: int = S(1, "torch threads of the learner process", check=THREADS)
    checkpoint_interval: float = S(300.0, "seconds between checkpoints (one is always written at the end)",
                                   check=POSITIVE)
    log_interval: float = S(5.0, "seconds between metrics.csv rows", check=POSITIVE)
    stats_window: int = S(200, "episodes in the recent mean return / success statistics", check=POSITIVE_INT)
    load_stem: str = S("", "checkpoint.pt (or run directory) of another run: copy its stem's conv layers",
                       flag={"metavar": "CKPT"})
    load_fc: bool = S(False, "with load_stem: also copy the stem's final FC layer")
    freeze_stem: bool = S(False, "with load_stem: do not train the copied stem layers (kept in checkpoints)")
    # --- faults (issue 14) ---
    max_nonfinite: int = S(10, "stop the run after this many updates in a row with a non-finite loss or gradient "
                           "(each one is skipped, counted in metrics.csv and logged)", check=POSITIVE_INT)
    # --- backends (issue 11) ---
    backend: str = S("local", "where the actors run: local (processes on this machine) or ray (Ray actors, "
                     "on this machine or across a cluster)", choices=BACKENDS)
    ray_address: str = S("", "with --backend ray: empty starts a private Ray on this machine (no dashboard, no "
                         "network); auto or HOST:PORT joins a running cluster", flag={"metavar": "ADDRESS"})
    actor_cpus: float = S(1.0, "CPUs Ray reserves for each actor", check=POSITIVE)
    rollouts_in_flight: int = S(2, "rollout requests the learner keeps in flight per Ray actor (1: lockstep)",
                                check=POSITIVE_INT)
    broadcast_interval: int = S(1, "send the learner's weights to the actors after every K-th update",
                                check=POSITIVE_INT)
    max_actor_restarts: int = S(3, "replace an actor that dies or fails (fresh environments) up to K times in a row "
                                "per actor slot (learner stream: its environments, every stream's episode cut); the "
                                "next failure ends the run with its traceback (0: the first)",
                                check=NON_NEGATIVE_INT)
    # --- Weights & Biases (issue 27; rtrl.records.wandb_log: the run id in wandb.json, resumed with the run) ---
    wandb: bool = S(False, "also log metrics.csv's rows and this config to Weights & Biases, one W&B run per run "
                    "directory (resumed with it); needs pip install 'rtrl[wandb]'; WANDB_MODE=offline keeps it on "
                    "this machine")
    wandb_project: str = S("", "with --wandb: the W&B project (empty: WANDB_PROJECT, else rtrl)", check=WANDB_PROJECT,
                           flag={"metavar": "PROJECT"})
    wandb_group: str = S("", "with --wandb: the W&B group of the run (e.g. one per sweep; empty: none)",
                         flag={"metavar": "GROUP"})
    wandb_name: str = S("", "with --wandb: the W&B run's display name (empty: the run directory's name)",
                        flag={"metavar": "NAME"})
    # --- the streaming learner (learner stream; Elsayed et al. 2024's Stream AC(lambda) defaults) ---
    num_envs: int = S(1, "with learner stream: independent streams stepped and learned from together (1: the pure "
                      "streaming setting)", check=POSITIVE_INT)
    stream_lr: float = S(1.0, "with learner stream: ObGD's step size alpha (bounded at every step)", check=POSITIVE)
    trace_decay: float = S(0.8, "with learner stream: lambda of the eligibility traces (they decay by gamma * lambda)",
                           check=UNIT_INTERVAL)
    kappa_value: float = S(2.0, "with learner stream: ObGD's kappa of the critic's step", check=POSITIVE)
    kappa_policy: float = S(3.0, "with learner stream: ObGD's kappa of the actor's step", check=POSITIVE)
    critic: str = S("shared", "shared (the value head on the policy's network: one stem and core) or separate (the "
                    "value's own stem and core, same architecture, own recurrent state and sensitivities, as Stream "
                    "AC(lambda) and CleanRL's PPO have; stream: ~0.78x the steps/s, docs/STREAMING.md)",
                    choices=("shared", "separate"))
    entropy_step: str = S("trace", "with learner stream: trace (Stream AC(lambda)'s entropy_cost * sign(delta) * grad H "
                          "in the actor's trace: its push scales with |delta|) or direct (step_size * entropy_cost * "
                          "grad H each step, outside the trace; docs/STREAMING.md)", choices=("trace", "direct"))
    obgd_bound: str = S("joint", "with learner stream: joint (one ObGD bound over all of a network's traces, as Stream "
                        "AC(lambda)) or recurrence (the cells' recurrence parameters -- element-wise recurrent weights, "
                        "per-unit decays and phases -- bounded by their own traces, the rest by theirs, so that the "
                        "large traces of long memories do not shrink the heads' steps; docs/STREAMING.md)",
                        choices=("joint", "recurrence"))
    env_options: dict = S({}, "extra keyword options for make_env", cli=False)
    resumed_at_step: int = S(0, "set by the run session, not by users: the step a resumed run goes on from (0: a fresh "
                             "run). The experience source seeds its environments and action sampling from it, so that "
                             "a resumed run plays fresh episodes instead of replaying those of step 0 (env_seeds)",
                             check=NON_NEGATIVE_INT, cli=False)

    def check_together(self) -> None:
        """Rules between settings (``rtrl.settings.validate`` calls this after the per-field checks)."""
        if self.batch_size % self.envs_per_actor:
            raise SettingError("{batch_size} must be a multiple of {envs_per_actor}: a learner batch is made "
                               "of whole actor rollouts", batch_size=self.batch_size,
                               envs_per_actor=self.envs_per_actor)
        if self.total_steps < self.steps_per_update and self.learner == "stream":
            raise SettingError("{total_steps} is less than one step of {num_envs} streams; accepted: at least "
                               f"{self.num_envs}",
                               total_steps=self.total_steps, num_envs=self.num_envs)
        if self.total_steps < self.steps_per_update:
            raise SettingError("{total_steps} is less than one learner update of {unroll_length} x {batch_size} = "
                               f"{self.steps_per_update} steps; accepted: at least {self.steps_per_update}",
                               total_steps=self.total_steps, unroll_length=self.unroll_length,
                               batch_size=self.batch_size)
        if self.minibatches > self.batch_size:
            raise SettingError("{minibatches} is more than the {batch_size} rollouts a batch holds; accepted: 1 to "
                               f"{self.batch_size}", minibatches=self.minibatches, batch_size=self.batch_size)
        if self.learner == "stream" and (self.update_epochs, self.minibatches, self.policy_clip) != (1, 1, 0):
            raise SettingError("{update_epochs}, {minibatches} and {policy_clip} shape the impala learner's updates "
                               "on batches; {learner} updates at every step and has none: leave them at 1, 1 and 0",
                               update_epochs=self.update_epochs, minibatches=self.minibatches,
                               policy_clip=self.policy_clip, learner=self.learner)
        if self.obgd_bound == "recurrence" and self.cell not in ELEMENTWISE_CELLS:
            raise SettingError("{obgd_bound} bounds the recurrence's own parameters apart; {cell} has none: accepted "
                               f"with an element-wise cell ({', '.join(ELEMENTWISE_CELLS)})", obgd_bound=self.obgd_bound,
                               cell=self.cell)
        check_device(self.device, present=False)   # its presence: torch_device(), when the run starts
        if self.backend == "ray" and self.num_actors == 0:
            raise SettingError("{backend} needs actors: give {num_actors} >= 1", backend=self.backend,
                               num_actors=self.num_actors)
        if self.backend == "ray" and self.num_actors * self.rollouts_in_flight < self.batch_size // self.envs_per_actor:
            raise SettingError("{num_actors} x {rollouts_in_flight} requests in flight cannot fill a batch of "
                               f"{self.batch_size // self.envs_per_actor} rollouts ({{batch_size}} / {{envs_per_actor}})",
                               num_actors=self.num_actors, rollouts_in_flight=self.rollouts_in_flight,
                               batch_size=self.batch_size, envs_per_actor=self.envs_per_actor)
        self.check_model(("rtrl", "tbptt"))
        if (self.load_fc or self.freeze_stem) and not self.load_stem:
            raise SettingError("{freeze_stem:name} and {load_fc:name} act on a stem copied with {load_stem:name}; "
                               "give {load_stem:name} too", load_fc=self.load_fc, freeze_stem=self.freeze_stem,
                               load_stem=self.load_stem)
        if self.load_stem and self.stem == "identity":   # the checkpoint is still checked: a warning, not an error
            log.warning("load_stem=%r does nothing with stem=identity: the identity stem has no layers to copy%s; "
                        "choose a stem with layers (auto, mlp, resnet, nature) to use it", self.load_stem,
                        " or freeze" if self.freeze_stem or self.load_fc else "")
        if self.ray_address and self.backend != "ray":
            raise SettingError("{ray_address} does nothing with {backend}; accepted: {ray_address:name} only with "
                               "{backend:name} ray", ray_address=self.ray_address, backend=self.backend)
        wandb_given = [name for name in ("wandb_project", "wandb_group", "wandb_name") if getattr(self, name)]
        if wandb_given and not self.wandb:
            raise SettingError(f"{{{wandb_given[0]}}} does nothing without {{wandb:name}}; accepted: "
                               f"{{{wandb_given[0]}:name}} only with {{wandb:name}}", wandb=self.wandb,
                               **{wandb_given[0]: getattr(self, wandb_given[0])})
        if self.wandb:   # a missing package is refused before the run starts
            from rtrl.records.wandb_log import import_wandb
            import_wandb()
        check_train_config(self)   # last: the run's large allocations, from the sizes the checks above accepted

    def validate(self) -> "TrainConfig":
        return validate(self)

    @property
    def buffer_count(self) -> int:
        """Rollout buffers to allocate: enough for a batch plus one being filled."""
        needed = self.batch_size // self.envs_per_actor + 1
        return max(self.num_buffers or 2 * self.num_actors, needed)

    @property
    def steps_per_update(self) -> int:
        """Agent steps between two updates: a batch of rollouts (impala), a step of every stream (stream)."""
        return self.num_envs if self.learner == "stream" else self.unroll_length * self.batch_size

    def loss_config(self) -> LossConfig:
        return LossConfig(self.discounting, self.baseline_cost, self.entropy_cost, self.reward_clip,
                          self.normalize_advantages, self.policy_clip, self.vtrace_lambda)

    def torch_device(self) -> torch.device:
        return check_device(self.device)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """The config of ``data``; a stored config's old ``core`` becomes ``cell`` and ``learning``."""
        return from_dict(cls, upgrade_core_alias(data))


# Settings that say where and how a run executes, not what it learns: a run resumes with other values of
# these without --force (a run started on one machine continues on a cluster, say).
RUNTIME_SETTINGS = frozenset({"backend", "ray_address", "actor_cpus", "rollouts_in_flight", "max_actor_restarts",
                              "num_actors", "num_buffers", "device", "learner_threads", "log_interval",
                              "checkpoint_interval", "sensitivity_memory_gib", "wandb", "wandb_project",
                              "wandb_group", "wandb_name", "resumed_at_step"})


def build_agent(cfg: TrainConfig, spec: EnvSpec) -> Agent:
    """The agent ``cfg`` describes, for an environment of ``spec``. A stacked core checks each state it
    allocates against ``sensitivity_memory_gib`` only (0: none); the run as a whole is checked once at
    its start (``check_sensitivity_memory``)."""
    limit = int(cfg.sensitivity_memory_gib * 2 ** 30) if cfg.sensitivity_memory_gib else 2 ** 62
    return Agent(spec.obs_shape, spec.obs_dtype, spec.action or spec.num_actions, cfg.model_config(), memory_limit=limit,
                 value_tower=value_tower(cfg))


def check_sensitivity_memory(cfg: TrainConfig, model: Agent, copies: int) -> None:
    """Refuse, before the run allocates more than its model, a run that would not fit: its RTRL sensitivities
    (per environment × ``copies``: the environment states the run's experience source holds at once, with
    the learner's batch — ``state_copies`` of its backend) against ``sensitivity_memory_gib`` when set, and
    all its large allocations (``rtrl.runtime.sizes``: parameters, rollout buffers, learner batch,
    environments, sensitivities) against the memory available now. Also refuses initial weights that are
    not finite (``check_initial_weights``): the model it is given is the one just built."""
    check_initial_weights(model, cfg)
    per_env = model.sensitivity_bytes(1)
    limit = cfg.sensitivity_memory_gib * 2 ** 30 or available_memory()
    if per_env * copies > limit:
        where = "the limit" if cfg.sensitivity_memory_gib else "the memory available now"
        raise SettingError(literal(
            f"the RTRL sensitivities need {format_bytes(per_env)} per environment x {copies} environment states "
            f"(actors, rollout buffers, learner batch) = {format_bytes(per_env * copies)}, over {where} of "
            f"{format_bytes(limit)}; ") + "with {num_layers}, {hidden_size}, {multilayer}, {batch_size}: use fewer "
            "layers or units, {multilayer:name} per-layer, a smaller batch, or raise {sensitivity_memory_gib:name}",
            num_layers=cfg.num_layers, hidden_size=cfg.hidden_size, multilayer=cfg.multilayer,
            batch_size=cfg.batch_size, sensitivity_memory_gib=cfg.sensitivity_memory_gib)
    stem = model.stem
    if hasattr(stem, "obs_shape"):   # an image stem (uint8 frames)
        obs_numel, itemsize = math.prod(stem.obs_shape), 1
    else:   # a vector stem: the mlp's first layer, or the identity's width
        first = getattr(getattr(stem, "net", None), "0", None) if hasattr(stem, "net") else None
        obs_numel, itemsize = (stem.net[0].in_features if first is not None else stem.output_size), 4
    check_train(cfg, model_sizes(model), obs_numel, itemsize, model.policy.out_features, copies)


def check_initial_weights(model, cfg: TrainConfig | None = None) -> None:
    """Refuse a model whose freshly initialised weights hold a NaN or an infinity (an init too large for
    float32): no run could start from them, and no checkpoint could keep them."""
    bad = [name for name, tensor in model.state_dict().items()
           if tensor.is_floating_point() and not bool(tensor.isfinite().all())]
    if bad:
        settings = dict(init_std=cfg.init_std, forget_bias=cfg.forget_bias, chrono_max=cfg.chrono_max) if cfg else {}
        raise SettingError(literal(f"the initial weights are not finite (NaN or infinity in {', '.join(bad[:3])}"
                                   f"{', ...' if len(bad) > 3 else ''}); nothing was written; ") +
                           ("with {init_std}, {forget_bias}, {chrono_max}: use smaller values" if cfg else
                            "use a smaller initialisation"), **settings)


# settings the run session sets, not users (they have no flag; a config file may not hold them)
SESSION_SETTINGS = {"resumed_at_step"}


def resolve_config(preset: str | None = None, config_file: str | None = None,
                   overrides: dict | None = None) -> TrainConfig:
    """Defaults < ``PRESETS[preset]`` < the settings in ``config_file`` < ``overrides``, validated. An error about
    a setting read from ``config_file`` (and not overridden) names it with the file: ``lr=-1 (in c.toml)``."""
    file_settings, overrides = (load_settings_file(config_file) if config_file else {}), overrides or {}
    known = {f.name for f in dataclasses.fields(TrainConfig)} | {"core"}
    unknown = sorted(set(file_settings) - known)
    if unknown:
        raise SettingError(literal(f"unknown settings {unknown} in {config_file}; accepted: "
                                   f"{', '.join(sorted(known - {'core'} - SESSION_SETTINGS))}"))
    # the run session sets it, over whatever a file said: there it would do nothing (a run's own config.json, which
    # holds every setting, holds its default)
    internal = sorted(name for name in set(file_settings) & SESSION_SETTINGS
                      if file_settings[name] != getattr(TrainConfig, name))
    if internal:
        raise SettingError(literal(f"{', '.join(internal)} (in {config_file}) is set by the run session, not by users "
                                   "(a resumed run goes on from its checkpoint's step); accepted: leave it out"))
    try:
        return _resolve_config(preset, file_settings, overrides)
    except SettingError as error:
        from_file = set(file_settings) - set(overrides)
        if "core" in from_file:   # the old name's cell and learning came from the file too
            from_file |= {"cell", "learning"} - set(overrides)
        error.sources.update({name: str(config_file) for name in from_file if name not in error.sources})
        error.args = (error.render(),)
        raise


def _resolve_config(preset: str | None, file_settings: dict, overrides: dict) -> TrainConfig:
    """:func:`resolve_config` with the file read.

    A default the user did not set gives way to what they did set: with ``batch_size`` set (in the file
    or the overrides) but not ``envs_per_actor``, a batch size that is not a multiple of the default (or
    the preset's) ``envs_per_actor`` gets the largest divisor below it instead, and the log says so.
    """
    values: dict = {}
    if preset:
        if preset not in PRESETS:
            raise SettingError(literal(f"unknown preset {preset!r}; accepted: {', '.join(sorted(PRESETS))}"))
        values.update(PRESETS[preset])
    user_set = upgrade_core_alias(file_settings)
    overrides = upgrade_core_alias(overrides)
    if "cell" in overrides or "learning" in overrides:   # a flag's core/cell/learning replaces the file's whole
        user_set = {k: v for k, v in user_set.items() if k not in ("cell", "learning")}
    user_set.update(overrides)
    base = dict(values)   # the defaults and the preset: what an ignored setting would have been
    values.update(user_set)
    _refuse_other_learners_settings(values.get("learner", TrainConfig.learner), user_set, base)
    if values.get("learner") == "stream":   # a preset's passes over batches (mujoco's) shape no stream update, as
        for name in STREAM_UNREAD_PASSES:    # its learning rate does not: the stream's values, so that check_together
            if name not in user_set:         # (which refuses them in code) passes, and the flags stay refused
                values[name] = getattr(TrainConfig, name)
    refuse_unread_model_settings(values, user_set, base)
    if "batch_size" in user_set and "envs_per_actor" not in user_set:
        _adapt_envs_per_actor(values)
    norm_unbounded_outputs(values, user_set, values.get("learner") == "stream")
    return TrainConfig.from_dict(values).validate()


# the impala learner's passes over a batch: a stream run holds them at their defaults (``check_together``)
STREAM_UNREAD_PASSES = ("update_epochs", "minibatches", "policy_clip")


def _refuse_other_learners_settings(learner: str, user_set: dict, base: dict) -> None:
    """A setting given (flag, file) that only another learner reads, at a value it would not otherwise have, would be
    ignored by ``learner``: refused by name. (A copied config.json holds every setting at its value: those pass.)"""
    for other, names in LEARNER_SETTINGS.items():
        if other == learner or learner not in LEARNER_SETTINGS:
            continue
        for name in names:
            if name in user_set and user_set[name] != base.get(name, getattr(TrainConfig, name)):
                raise SettingError(f"{{{name}}} is a setting of the {other} learner; {{learner}} does not read it: "
                                   f"leave it out, or give {{learner:name}} {other}",
                                   **{name: user_set[name]}, learner=learner)


def _adapt_envs_per_actor(values: dict) -> None:
    batch_size, envs_per_actor = values["batch_size"], values.get("envs_per_actor", TrainConfig.envs_per_actor)
    if not (isinstance(batch_size, int) and batch_size > 0 and batch_size % envs_per_actor):
        return  # fits already, or validate() will name the bad batch size
    chosen = max(d for d in range(1, envs_per_actor + 1) if batch_size % d == 0)
    values["envs_per_actor"] = chosen
    log.info("envs_per_actor=%d chosen: batch_size=%d is not a multiple of envs_per_actor=%d, which was not set "
             "(a batch is made of whole actor rollouts); set envs_per_actor to choose another", chosen,
             batch_size, envs_per_actor)
