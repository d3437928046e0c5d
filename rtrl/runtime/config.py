"""One config object per run: every setting of `rtrl train`, with its default and what it means.

Resolution order: dataclass defaults < ``--preset`` < ``--config FILE`` (TOML or YAML) < explicit flags.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from rtrl.models import CORES, STEMS


@dataclass
class TrainConfig:
    env: str = "memory:delayed_recall"      # environment id, prefix:name[?key=value&...] (see rtrl.envs)
    core: str = "rtrl-elstm"                # recurrent core: rtrl-elstm, tbptt-elstm, lstm, ff
    total_steps: int = 1_000_000            # agent steps (env steps over all actors) to train for
    unroll_length: int = 10                 # T: steps per rollout (each rollout holds T+1, step 0 repeats)
    batch_size: int = 32                    # B: rollouts per learner update
    hidden_size: int = 32                   # N: units of the recurrent core
    stem: str = "auto"                      # observation stem: auto (resnet for images, mlp for vectors), mlp, resnet, nature (DQN CNN), identity
    stem_hidden_size: int = 64              # width of the stem's output features (paper: 256)
    feature_norm: bool = False              # LayerNorm on the stem's features before the core (not in the paper; keeps the core's gates out of saturation on Atari)
    forget_bias: float = 3.0                # initial eLSTM forget bias (paper: 0; 3 learns long delays, DESIGN §7)
    num_actors: int = 2                     # actor processes (0: step the environments inline in the learner)
    envs_per_actor: int = 16                # environments stepped together by one actor (batch_size % this == 0)
    num_buffers: int = 0                    # shared rollout buffers (0: 2 × num_actors, at least batch/envs + 1)
    lr: float = 2e-3                        # RMSprop learning rate, decayed linearly to 0 over the run (paper: 6e-4)
    rmsprop_alpha: float = 0.99             # RMSprop smoothing constant
    rmsprop_eps: float = 0.01               # RMSprop epsilon
    grad_norm_clip: float = 40.0            # global gradient-norm clip (RTRL gradients included)
    discounting: float = 0.99               # γ
    baseline_cost: float = 0.5              # weight of the baseline loss
    entropy_cost: float = 0.01              # weight of the entropy loss
    reward_clip: bool = True                # clip rewards to [-1, 1] for the loss
    seed: int = 0                           # seeds the model init, the actors' environments and sampling
    device: str = "cpu"                     # learner device (cpu, cuda, cuda:1...); actors always run on the CPU
    learner_threads: int = 1                # torch threads of the learner process
    checkpoint_interval: float = 300.0      # seconds between checkpoints (one is always written at the end)
    log_interval: float = 5.0               # seconds between metrics.csv rows
    stats_window: int = 200                 # episodes in the "recent mean return / success" statistics
    load_stem: str = ""                     # checkpoint.pt (or run directory) of another run: copy its stem's conv layers
    load_fc: bool = False                   # with --load-stem: also copy the stem's final FC layer
    freeze_stem: bool = False               # with --load-stem: do not train the copied stem layers (kept in checkpoints)
    env_options: dict = field(default_factory=dict)  # extra keyword options for make_env

    def validate(self) -> "TrainConfig":
        def fail(name, value, accepted):
            raise ValueError(f"bad {name}={value!r}; accepted: {accepted}")

        if self.core not in CORES:
            fail("core", self.core, ", ".join(CORES))
        if self.stem not in STEMS:
            fail("stem", self.stem, ", ".join(STEMS))
        for name in ("total_steps", "unroll_length", "batch_size", "hidden_size", "stem_hidden_size",
                     "envs_per_actor", "stats_window"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                fail(name, getattr(self, name), "a positive integer")
        if not isinstance(self.num_actors, int) or self.num_actors < 0:
            fail("num_actors", self.num_actors, "0 (inline) or a positive integer")
        if self.num_buffers < 0:
            fail("num_buffers", self.num_buffers, "0 (automatic) or a positive integer")
        if self.batch_size % self.envs_per_actor:
            raise ValueError(f"batch_size={self.batch_size} must be a multiple of envs_per_actor="
                             f"{self.envs_per_actor}: a learner batch is made of whole actor rollouts")
        for name in ("lr", "rmsprop_eps", "checkpoint_interval", "log_interval", "grad_norm_clip"):
            if not getattr(self, name) > 0:
                fail(name, getattr(self, name), "a positive number")
        for name in ("discounting", "rmsprop_alpha"):
            if not 0 <= getattr(self, name) <= 1:
                fail(name, getattr(self, name), "a number in [0, 1]")
        for name in ("baseline_cost", "entropy_cost"):
            if getattr(self, name) < 0:
                fail(name, getattr(self, name), "a number >= 0")
        if not self.device.startswith(("cpu", "cuda", "mps")):
            fail("device", self.device, "cpu, cuda, cuda:N, mps")
        if (self.load_fc or self.freeze_stem) and not self.load_stem:
            raise ValueError("--load-fc and --freeze-stem act on a stem copied with --load-stem CKPT; "
                             "give --load-stem too")
        return self

    @property
    def buffers(self) -> int:
        needed = self.batch_size // self.envs_per_actor + 1
        return max(self.num_buffers or 2 * self.num_actors, needed)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; accepted: {', '.join(sorted(known))}")
        return cls(**data)


# The paper's settings (DESIGN.md §5; Irie et al. 2024, appendix) and the built-in memory job; any flag
# still overrides. Actors: the paper ran 48 actors; 2 actors × 8 environments suit a 2-core machine
# (a learner batch of 32 rollouts is then 4 actor rollouts), scale num_actors up on a bigger one.
_PAPER = dict(core="rtrl-elstm", batch_size=32, stem="resnet", stem_hidden_size=256, forget_bias=0.0, lr=6e-4,
              entropy_cost=0.01, baseline_cost=0.5, rmsprop_alpha=0.99, rmsprop_eps=0.01, grad_norm_clip=40.0,
              discounting=0.99, reward_clip=True, num_actors=2, envs_per_actor=8)
PRESETS: dict[str, dict] = {
    "atari": dict(_PAPER, env="atari:Pong", unroll_length=50, hidden_size=256, total_steps=200_000_000),
    "procgen": dict(_PAPER, env="procgen:chaser?distribution_mode=hard&num_levels=500", unroll_length=50,
                    hidden_size=256, total_steps=200_000_000),
    "dmlab": dict(_PAPER, env="dmlab:rooms_watermaze", unroll_length=100, hidden_size=512,
                  total_steps=100_000_000),
    # not the paper's: the recipe with which R2AC learned Pong on a 2-core CPU (docs/BENCHMARKS.md): the
    # DQN stem (~6x cheaper), LayerNorm on its features (keeps the eLSTM gates out of saturation) and
    # A2C-sized batches (80 steps per update) for many updates per frame
    "atari-cpu": dict(_PAPER, env="atari:Pong", stem="nature", feature_norm=True, unroll_length=20, batch_size=4,
                      envs_per_actor=4, hidden_size=256, total_steps=4_000_000),
    # the stem only gets within-rollout gradients (as in the paper), so a learned stem cannot learn to
    # encode a cue whose reward arrives rollouts later; vector observations go to the core as they are
    "memory": dict(env="memory:delayed_recall?cues=2&delay=30", core="rtrl-elstm", total_steps=2_000_000,
                   unroll_length=10, batch_size=32, hidden_size=32, stem="identity", stem_hidden_size=64,
                   forget_bias=3.0, lr=2e-3, entropy_cost=0.01, num_actors=2, envs_per_actor=16),
}


def load_config_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ValueError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    if path.suffix == ".toml":
        import tomllib
        data = tomllib.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        import yaml
        data = yaml.safe_load(text) or {}
    elif path.suffix == ".json":
        data = json.loads(text)
    else:
        raise ValueError(f"config file {str(path)!r}: unknown format {path.suffix!r}; accepted: .toml, .yaml, .yml, .json")
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r} must hold a table of settings, got {type(data).__name__}")
    return {k.replace("-", "_"): v for k, v in data.items()}


def _field_comments() -> dict[str, str]:
    """The comment after each field in the dataclass source: the help text of its flag."""
    import inspect
    comments = {}
    for line in inspect.getsource(TrainConfig).splitlines():
        stripped = line.strip()
        if ":" in stripped and "#" in stripped and not stripped.startswith(("#", "def", "@")):
            comments[stripped.split(":", 1)[0]] = stripped.split("#", 1)[1].strip()
    return comments


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (defaults shown are the dataclass defaults; presets change them)."""
    comments = _field_comments()
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        if f.name == "env_options":
            continue
        default = getattr(defaults, f.name)
        kind = type(default)
        comment = comments.get(f.name, "").replace("%", "%%")  # argparse %-formats help strings
        kwargs = dict(dest=f.name, default=None, help=f"{comment} (default: {default})")
        if kind is bool:  # --flag alone means true; --flag false also works
            kwargs.update(type=_bool, metavar="BOOL", nargs="?", const=True)
        else:
            kwargs.update(type=kind)
        if f.name == "core":
            kwargs["choices"] = CORES
        if f.name == "stem":
            kwargs["choices"] = STEMS
        if f.name == "load_stem":
            kwargs["metavar"] = "CKPT"
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="start from a named set of settings (flags still override)")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="TOML or YAML file of settings (keys as the flags, '-' or '_'); flags override it")


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    values: dict = {}
    if getattr(args, "preset", None):
        values.update(PRESETS[args.preset])
    if getattr(args, "config", None):
        values.update(load_config_file(args.config))
    for f in fields(TrainConfig):
        flag = getattr(args, f.name, None)
        if flag is not None:
            values[f.name] = flag
    return TrainConfig.from_dict(values).validate()
