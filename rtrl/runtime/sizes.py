"""One size estimator for every command: a run's large allocations, estimated before any of them is made.

A command lists what it will allocate as ``(what, bytes)`` parts and calls :func:`check_fits`, which
refuses (a ``SettingError``: exit 2) with the estimate, its parts and the limit when the total does not fit
in the memory the machine has available now (``MemAvailable``) or in a limit the user set. Estimates
are lower bounds: a refused run could not have run; an accepted one may still be large.

- ``rtrl train``: :func:`train_parts` (parameters with their gradients, optimizer state and the actors'
  copies, the rollout buffers, the learner's batch and its activations, the environments, the RTRL
  sensitivities; the streaming learner's eligibility traces), from the config alone (``TrainConfig.check_together``, a model built on the ``meta``
  device for a minimal environment) and again with the run's real model (``check_sensitivity_memory``).
- ``rtrl copy-task``: :func:`copy_task_parts` (the data set, the model, its optimizer, its sensitivities).
"""
from __future__ import annotations

from rtrl.cells import available_memory
from rtrl.cells.stacked import format_bytes
from rtrl.settings import SettingError, literal
from rtrl.tree import tensors_of

FLOAT = 4
ENV_BYTES = 2048          # one environment object (a Python object, its spaces, its buffers): at least
BUFFER_OVERHEAD = 4096    # one rollout buffer's tensors and their shared-memory handles: at least


def check_fits(parts: list[tuple[str, float]], limit: float | None, hint: str, where: str = "", **settings) -> None:
    """Refuse when the parts add up to more than ``limit`` bytes (None: the memory available now).

    ``hint`` says what to change, naming settings as ``{name}`` (their values in ``settings``)."""
    total = sum(size for _, size in parts)
    if limit is None:
        limit, where = available_memory(), where or "the memory available now (MemAvailable)"
    if total <= limit:
        return
    shown = ", ".join(f"{what} {format_bytes(size)}" for what, size in sorted(parts, key=lambda p: -p[1]) if size)
    raise SettingError(literal(f"this run would need at least {format_bytes(total)} ({shown}), over {where} of "
                               f"{format_bytes(limit)}; refused before allocating it; ") + hint, **settings)


def tensor_bytes(tree) -> int:
    """Bytes of every tensor in ``tree`` (a state dict, a recurrent state, a learner's state; ``meta`` ones too)."""
    return sum(t.numel() * t.element_size() for t in tensors_of(tree))


def parameter_bytes(model) -> int:
    """Bytes of a model's parameters and buffers (works on the ``meta`` device too)."""
    return tensor_bytes(model.state_dict())


def model_sizes(model) -> dict:
    """What :func:`train_parts` needs of a model (real, or on the meta device): its parameter bytes, one
    environment's recurrent state (without sensitivities) and sensitivity bytes, and the stem's width."""
    tower = getattr(model, "value_tower", None)
    return {"params": parameter_bytes(model), "state": tensor_bytes(_state_tensors(model)),
            "sensitivity": model.sensitivity_bytes(1),
            "stem_width": model.stem.output_size + (tower.stem.output_size if tower is not None else 0)}


def upper_sizes(cfg) -> dict:
    """Bounds of :func:`model_sizes` from the config's sizes alone (an environment of one observation value)."""
    N, S, L = cfg.hidden_size, cfg.stem_hidden_size, cfg.num_layers
    width, towers = N + S + 8, 2 if value_tower(cfg) else 1
    return {"params": towers * 16 * L * width * width * FLOAT, "state": towers * 4 * N * L * FLOAT,
            "sensitivity": towers * 16 * N * width * (L * L * N if L > 1 else 1) * FLOAT, "stem_width": towers * S}


def value_tower(cfg) -> bool:
    """Whether the agent of ``cfg`` has a value tower (``Agent(value_tower=True)``): the impala learner's separate
    critic (the streaming learner keeps a critic network of its own)."""
    return getattr(cfg, "critic", "shared") == "separate" and getattr(cfg, "learner", "impala") == "impala"


def state_copies(cfg) -> int:
    """Environment states with RTRL sensitivities the run of ``cfg`` holds at once (its learner's source's)."""
    from rtrl.runtime.learners import LEARNERS
    return LEARNERS[cfg.learner].state_copies(cfg)


def train_parts(cfg, sizes: dict, obs_numel: int, obs_itemsize: int, num_actions: int,
                copies: int | None = None) -> list[tuple[str, float]]:
    """The large allocations of a training run of ``cfg`` whose model has ``sizes`` (:func:`model_sizes`);
    ``copies``: environment states with sensitivities (default: ``state_copies``)."""
    copies = state_copies(cfg) if copies is None else copies
    if cfg.learner == "stream":   # no actors, no rollouts: the streams, their state, one step's activations
        streams = cfg.num_envs
        width = cfg.hidden_size * cfg.num_layers * 12 + sizes["stem_width"] * 4
        # each stream's eligibility traces: a critic's and an actor's copy of the parameters (and with entropy_step
        # direct a buffer of the entropy's gradient): num_envs x the parameters, the largest part of many runs
        traces = 2 + (getattr(cfg, "entropy_step", "trace") == "direct")
        return [("parameters", sizes["params"] * 3 * 2), ("activations", streams * (width + obs_numel) * FLOAT * 2),
                ("eligibility traces", streams * traces * sizes["params"]),
                ("environments", streams * (ENV_BYTES + obs_numel * obs_itemsize)),
                ("RTRL sensitivities", sizes["sensitivity"] * copies)]
    T1, batch = cfg.unroll_length + 1, cfg.batch_size
    # the learner's weights, gradients and RMSprop average; each actor process holds a copy of the weights
    model_copies = 3 + cfg.num_actors
    per_step = obs_numel * obs_itemsize + FLOAT * (num_actions + 6) + 8   # obs, logits, reward.., action
    state = sizes["state"]
    slots = cfg.buffer_count * cfg.envs_per_actor if cfg.num_actors else batch
    buffers = slots * (T1 * per_step + state) + (cfg.buffer_count if cfg.num_actors else 1) * BUFFER_OVERHEAD
    learner_batch = batch * (T1 * per_step + state)
    width = cfg.hidden_size * cfg.num_layers * 12 + sizes["stem_width"] * 4
    activations = T1 * batch * (width + obs_numel) * FLOAT * 2   # forward values kept for the backward pass
    envs = (cfg.num_actors * cfg.envs_per_actor if cfg.num_actors else batch) * (ENV_BYTES + obs_numel * obs_itemsize)
    return [("parameters", sizes["params"] * model_copies), ("rollout buffers", buffers),
            ("learner batch", learner_batch), ("activations", activations), ("environments", envs),
            ("RTRL sensitivities", sizes["sensitivity"] * copies)]


def _state_tensors(model) -> list:
    """The tensors of one environment's recurrent state, without its sensitivities (those are counted apart)."""
    try:
        state = model.initial_step_state(1)
    except Exception:   # a core that cannot make a state on this device: its state is small
        return []
    return tensors_of(state)


TRAIN_HINT = ("with {hidden_size}, {stem_hidden_size}, {unroll_length}, {batch_size}, {num_layers}: use fewer units "
              "or layers, shorter rollouts or a smaller batch")
STREAM_HINT = ("with {hidden_size}, {stem_hidden_size}, {num_envs}, {num_layers}: use fewer units or layers, or fewer "
               "streams")


def check_train_config(cfg) -> None:
    """Refuse a config whose run could not fit here, from the config alone. Cheap bounds first; when they
    do not fit, the model is built on the meta device (nothing allocated; a few seconds the first time) for
    the smallest environment of its stem (a vector of one value, or a 36x36 image) and counted exactly."""
    image = cfg.stem in ("resnet", "nature")
    obs_numel, itemsize = (36 * 36, 1) if image else (1, FLOAT)
    if _fits(train_parts(cfg, upper_sizes(cfg), obs_numel, itemsize, 2), None):
        return
    import torch
    from rtrl.models import Agent

    limit = int(cfg.sensitivity_memory_gib * 2 ** 30) if cfg.sensitivity_memory_gib else 2 ** 62
    try:
        with torch.device("meta"):
            model = Agent((1, 36, 36) if image else (1,), torch.uint8 if image else torch.float32, 2,
                          cfg.model_config(), memory_limit=limit, value_tower=value_tower(cfg))
        sizes = model_sizes(model)
    except SettingError:
        raise
    except Exception:   # a model this estimate cannot build: the run's own checks (after the env) say why
        sizes = dict(upper_sizes(cfg), params=0, sensitivity=0)
    check_train(cfg, sizes, obs_numel, itemsize, 2)


def check_train_env(cfg, spec, copies: int | None = None) -> None:
    """:func:`check_train_config` for the run's environment (``spec``: an ``EnvSpec``), before its model is built:
    that check counts an observation of one value and two actions, and an environment of many (a
    ``memory:delayed_recall?cues=10**9``, the stem's first layer or the identity stem's core input) had its model
    allocated before :func:`check_train` counted it. Cheap bounds first; when they do not fit, the model is built
    on the meta device for this environment and counted exactly."""
    import math

    import torch
    from rtrl.models import Agent

    obs_numel, itemsize = math.prod(spec.obs_shape), torch.empty((), dtype=spec.obs_dtype).element_size()
    N, S, L = cfg.hidden_size, cfg.stem_hidden_size, cfg.num_layers
    towers = 2 if value_tower(cfg) else 1
    bound = upper_sizes(cfg)   # plus the observation's width into the stem (or the core) and the heads' outputs
    bound["params"] += towers * FLOAT * (obs_numel * (S + 16 * N) + spec.num_actions * (2 * N * L + S + 1))
    bound["sensitivity"] += towers * FLOAT * 16 * N * obs_numel * (L * L * N if L > 1 else 1)
    if _fits(train_parts(cfg, bound, obs_numel, itemsize, spec.num_actions, copies), None):
        return
    limit = int(cfg.sensitivity_memory_gib * 2 ** 30) if cfg.sensitivity_memory_gib else 2 ** 62
    try:
        with torch.device("meta"):
            model = Agent(spec.obs_shape, spec.obs_dtype, spec.action or spec.num_actions, cfg.model_config(),
                          memory_limit=limit, value_tower=value_tower(cfg))
        sizes = model_sizes(model)
    except SettingError:
        raise
    except Exception:   # a model this estimate cannot build: the run's own checks say why
        return
    check_train(cfg, sizes, obs_numel, itemsize, model.policy.out_features, copies)


def _fits(parts, limit) -> bool:
    return sum(size for _, size in parts) <= (available_memory() if limit is None else limit)


def check_train(cfg, sizes: dict, obs_numel: int, obs_itemsize: int, num_actions: int,
                copies: int | None = None) -> None:
    """Refuse a training run whose large allocations (:func:`train_parts`) would not fit in the memory
    available now."""
    parts = train_parts(cfg, sizes, obs_numel, obs_itemsize, num_actions, copies)
    settings = dict(hidden_size=cfg.hidden_size, stem_hidden_size=cfg.stem_hidden_size, num_layers=cfg.num_layers)
    # an exact stack's sensitivities grow as N^3 per layer pair (docs/MULTILAYER.md): per-layer RTRL keeps N^2
    exact = (cfg.learning == "rtrl" and cfg.num_layers > 1 and cfg.multilayer == "exact")
    tail = ", or {multilayer} (each layer's own RTRL: O(N^2) per layer instead of O(N^3))" if exact else ""
    if exact:
        settings["multilayer"] = "per-layer"
    if cfg.learner == "stream":   # its streams are its batch: the impala learner's rollouts and batch are not read
        check_fits(parts, None, STREAM_HINT + tail, num_envs=cfg.num_envs, **settings)
    else:
        check_fits(parts, None, TRAIN_HINT + tail, unroll_length=cfg.unroll_length, batch_size=cfg.batch_size,
                   **settings)


def copy_task_parts(config, sensitivity_bytes_per_sequence: int = 0, parameters: int = 0) -> list[tuple[str, float]]:
    """The large allocations of a copy-task run: its three splits (inputs and targets of 2L int64 tokens, the
    lengths, and the patterns kept to keep the splits disjoint), the model, Adam's state, and the
    sensitivities of the sequences run side by side."""
    sequences = config.train_size + config.valid_size + config.test_size
    data = sequences * (2 * 2 * config.length * 8 + 8 + 64 + 8 * config.length)
    return [("data set", data), ("parameters", 4 * parameters),
            ("RTRL sensitivities", sensitivity_bytes_per_sequence * max(config.batch_size, config.eval_batch_size)),
            ("activations", config.batch_size * 2 * config.length * config.hidden_size * config.num_layers * 8 * FLOAT)]
