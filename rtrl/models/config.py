"""One model config: what network an agent (or the copy task's model) is, in one documented dataclass.

The vocabulary is the library's, everywhere:

* ``cell`` — the recurrent cell: ``elstm`` (the paper's eLSTM), ``indrnn``, ``lru`` (a real diagonal
  linear unit) — the element-wise cells of ``rtrl.cells``, trainable by RTRL — and the baselines
  ``lstm`` (``torch.nn.LSTM``) and ``ff`` (no recurrence).
* ``learning`` — how the gradient crosses time: ``rtrl`` (exact, through the whole history), ``tbptt``
  (backprop cut at the start of each rollout or call; the agent's baseline) or ``bptt`` (backprop through
  the whole of each sequence: the copy task, whose sequences are short enough).
* ``multilayer`` — with ``num_layers`` > 1 and ``rtrl``: ``exact`` (RTRL through all layers) or
  ``per-layer`` (each layer's own RTRL; gradients between layers within the rollout).

A model option is one field here: ``TrainConfig`` inherits every field (so each is a flag of `rtrl train`
and a key of config.json), ``rtrl.models.Agent`` and ``make_core`` read them from this object.
The names before this vocabulary (``core = rtrl-elstm | tbptt-elstm | lstm | ff``) are kept as aliases:
``CORE_ALIASES`` says what each means.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from rtrl.cells import CELL_TYPES, MULTILAYER
from rtrl.cells.complex_cells import PHASES
from rtrl.models.stems import STEMS
from rtrl.settings import POSITIVE_INT, Check, is_finite_number, SettingError, literal, setting, validate

S = setting
log = logging.getLogger(__name__)
ELEMENTWISE_CELLS = tuple(CELL_TYPES)             # elstm, indrnn, lru: any learning, stackable
CELLS = ELEMENTWISE_CELLS + ("lstm", "ff")
RTU_VARIANTS = ("linear", "nonlinear")
LEARNING = ("rtrl", "tbptt", "bptt")
LOG_STD = ("parameter", "state")
# cells whose outputs grow with their weights (y = c, or a relu) and, under a learner whose one step may move every
# weight far (the streaming learner's ObGD: up to 1/κ each), diverged within 5,000 steps at delay 30 (values ~1e6)
# unless a LayerNorm brought the core's output to unit scale, as Stream AC has after each layer (docs/STREAMING.md).
# clru's outputs are unbounded too, but its input normalisation kept them in range there (40,000 steps)
UNBOUNDED_OUTPUT_CELLS = ("indrnn", "lru")
# the old ``core`` names: (cell, learning)
CORE_ALIASES = {"rtrl-elstm": ("elstm", "rtrl"), "tbptt-elstm": ("elstm", "tbptt"), "lstm": ("lstm", "tbptt"),
                "ff": ("ff", "tbptt")}
# ranges the code can run: float32 weights, a sigmoid saturated long before |b| = 100
CHRONO = Check("0 (off) or a number > 2 and at most 1e7 (time scales in steps)",
               lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and (v == 0 or 2 < v <= 1e7))
FORGET_BIAS = Check("a finite number from -100 to 100", lambda v: is_finite_number(v) and -100 <= v <= 100)
INIT_STD = Check("a positive finite number up to 100", lambda v: is_finite_number(v) and 0 < v <= 100)
# the model settings read only in some configurations: (who reads them, the settings that decide it, whether they
# are read with those). Given where they are not read, with a value they would not otherwise have, they are
# refused by name (``refuse_unread_model_settings``) instead of being ignored
CONDITIONAL_SETTINGS = {
    "forget_bias": ("the elstm cell", ("cell",), lambda v: v["cell"] == "elstm"),
    "init_std": ("the elstm cell", ("cell",), lambda v: v["cell"] == "elstm"),
    "chrono_max": ("the elstm and lstm cells", ("cell",), lambda v: v["cell"] in ("elstm", "lstm")),
    "rtu_variant": ("the rtu cell", ("cell",), lambda v: v["cell"] == "rtu"),
    "phase": ("the rtu and clru cells", ("cell",), lambda v: v["cell"] in ("rtu", "clru")),
    "multilayer": ("an element-wise stack learning by rtrl (learning rtrl, num_layers > 1)", ("learning", "num_layers"),
                   lambda v: v["learning"] == "rtrl" and v["num_layers"] > 1),
    "stem_hidden_size": ("the auto, mlp, resnet and nature stems", ("stem",), lambda v: v["stem"] != "identity"),
}


@dataclass
class ModelConfig:
    """The network: stem -> recurrent core -> heads (``rtrl.models.Agent``)."""

    cell: str = S("elstm", "recurrent cell: elstm (the paper's), indrnn, lru, rtu, clru (complex LRU) (element-wise: "
                  "trainable by RTRL; rtu and clru output 2N numbers), "
                  "lstm (torch.nn.LSTM), ff (no recurrence)", choices=CELLS)
    learning: str = S("rtrl", "how the gradient crosses time: rtrl (exact, through the whole history; element-wise "
                      "cells), tbptt (cut at each rollout's start), bptt (whole sequences: the copy task)",
                      choices=LEARNING)
    hidden_size: int = S(32, "N: units of the recurrent core (of each layer)", check=POSITIVE_INT)
    num_layers: int = S(1, "L: stacked layers of an element-wise cell; docs/MULTILAYER.md", check=POSITIVE_INT)
    multilayer: str = S("exact", "with learning rtrl and num_layers > 1: exact (RTRL through all layers; memory "
                        "O(N^3) per environment) or per-layer (each layer's own RTRL; gradients between layers "
                        "within the rollout only)", choices=MULTILAYER)
    stem: str = S("auto", "observation stem: auto (resnet for images, mlp for vectors), mlp, resnet, nature "
                  "(DQN CNN), identity", choices=STEMS)
    stem_hidden_size: int = S(64, "width of the stem's output features (paper: 256)", check=POSITIVE_INT)
    feature_norm: bool = S(False, "LayerNorm on the stem's features before the core (not in the paper; keeps the "
                           "core's gates out of saturation on Atari)")
    output_norm: bool = S(False, "LayerNorm without parameters on the core's output before the policy and value "
                          "heads (as Stream AC(lambda) puts one after every hidden layer, Elsayed et al. 2024): "
                          "the heads see features of unit scale however large the core's state grows; the stream "
                          "learner turns it on for indrnn and lru unless it is set")
    obs_norm: bool = S(False, "normalise vector observations by their running mean and std (updated by the learner "
                       "from each batch, clipped to ±5 std, saved in checkpoints), as VecNormalize does")
    reward_norm: bool = S(False, "divide the rewards, in the loss and in the core's input, by the root mean square of "
                          "a discounted return of rewards with their running mean and variance (updated by the "
                          "learner, saved in checkpoints: rtrl.models.RewardScaler), so that values are of order 1; "
                          "for continuous control, with reward_clip off. With learner stream, only the TD error's "
                          "rewards are scaled, by the running std of each stream's discounted return (as Stream "
                          "AC(lambda)); the core reads them unscaled (docs/STREAMING.md)")
    log_std: str = S("parameter", "a Gaussian policy's (Box actions) log std: parameter (one per action component, "
                     "independent of the state, as CleanRL's and SB3's PPO) or state (an output of the policy head)",
                     choices=LOG_STD)
    forget_bias: float = S(3.0, "initial eLSTM forget bias (paper: 0; 3 learns long delays, docs/DESIGN.md §7)",
                           check=FORGET_BIAS)
    chrono_max: float = S(0.0, "chrono forget-gate init (Tallec & Ollivier 2018), replacing forget_bias: b_f = "
                          "log(U(1, chrono_max - 1)), time scales spread over 2..chrono_max steps (eLSTM; LSTM "
                          "too); 0: off", check=CHRONO)
    init_std: float = S(0.1, "std of the normal init of the eLSTM's recurrent tensors (paper: 0.1)", check=INIT_STD)
    rtu_variant: str = S("linear", "the RTU's recurrence (cell rtu; Elelimy et al. 2024): linear (tanh on the "
                         "output) or nonlinear (tanh on each channel inside the recurrence)", choices=RTU_VARIANTS)
    phase: str = S("exp", "how the rtu's and clru's rotation angle θ is a parameter: exp (θ = exp(p), the papers'; "
                   "the step on θ grows with θ) or direct (θ = p; same init)", choices=PHASES)

    def check_model(self, learnings: tuple[str, ...] = ("rtrl", "tbptt")) -> None:
        """The rules between the model's settings; ``learnings``: what the caller trains by (an agent learns
        from rollouts: rtrl or tbptt; the copy task from whole sequences: rtrl or bptt)."""
        if self.learning not in learnings:
            raise SettingError(f"{{learning}} does not apply here; accepted: {', '.join(learnings)}",
                               learning=self.learning)
        if self.cell not in ELEMENTWISE_CELLS and self.learning == "rtrl":
            other = [w for w in learnings if w != "rtrl"]
            raise SettingError("{cell} is not an element-wise cell, so it cannot learn by {learning}; accepted: "
                               f"{', '.join(other)} for it, or an element-wise cell ({', '.join(ELEMENTWISE_CELLS)})",
                               cell=self.cell, learning="rtrl")
        if self.num_layers > 1 and self.cell not in ELEMENTWISE_CELLS:
            raise SettingError(f"{{num_layers}} needs an element-wise cell; accepted: {', '.join(ELEMENTWISE_CELLS)} "
                               "(not {cell})", num_layers=self.num_layers, cell=self.cell)

    def model_config(self) -> "ModelConfig":
        """The model's fields alone (of a config that inherits them, such as ``TrainConfig``)."""
        return ModelConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ModelConfig)})

    @property
    def label(self) -> str:
        """A short name of the core: rtrl-elstm, tbptt-lstm, 2x-exact-rtrl-elstm..."""
        depth = "" if self.num_layers == 1 else f"{self.num_layers}x-" + (
            f"{self.multilayer}-" if self.learning == "rtrl" else "")
        return f"{depth}{self.learning}-{self.cell}"


def with_options(config: ModelConfig | None = None, **options) -> ModelConfig:
    """``config`` (default: ``ModelConfig()``) with ``options`` (its fields, or the old ``core``) replaced,
    each setting checked."""
    options = upgrade_core_alias(options)
    known = [f.name for f in dataclasses.fields(ModelConfig)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise SettingError(literal(f"unknown model settings {unknown}; accepted: {', '.join(known)}"))
    base = (config or ModelConfig()).model_config()
    refuse_unread_model_settings({**dataclasses.asdict(base), **options}, options, dataclasses.asdict(base))
    return validate(dataclasses.replace(base, **options))


def refuse_unread_model_settings(values: dict, given: dict, base: dict) -> None:
    """A setting in ``given`` (the user's: flags, a file, keyword options) that the model ``values`` describe
    does not read (``CONDITIONAL_SETTINGS``: an eLSTM init for an RTU, ``multilayer`` for one layer...), with a
    value other than the one it would have had (``base``: the defaults and a preset's), would be silently
    ignored: refused, naming it, what reads it and the settings that rule it out. (A settings file copied from
    a run's config.json holds every setting at its value: those equal to it pass.)"""
    merged = {f.name: values.get(f.name, f.default) for f in dataclasses.fields(ModelConfig)}
    for name, (readers, deciders, reads) in CONDITIONAL_SETTINGS.items():
        if name not in given or reads(merged) or given[name] == base.get(name, getattr(ModelConfig, name)):
            continue
        ruled_out = ", ".join(f"{{{d}}}" for d in deciders)
        raise SettingError(f"{{{name}}} is read by {readers} only; with {ruled_out} it would be ignored: leave it "
                           "out, or change " + " / ".join(f"{{{d}:name}}" for d in deciders),
                           **{name: given[name]}, **{d: merged[d] for d in deciders})


def norm_unbounded_outputs(values: dict, given: dict, large_steps: bool) -> None:
    """``output_norm`` on in ``values``, logged, for a cell of ``UNBOUNDED_OUTPUT_CELLS`` under a learner of
    ``large_steps`` when the user (``given``: flags, a file) did not set it: the default gives way, as a preset's."""
    if large_steps and values.get("cell") in UNBOUNDED_OUTPUT_CELLS and "output_norm" not in given \
            and not values.get("output_norm"):
        values["output_norm"] = True
        log.info("output_norm=True chosen: the %s cell's outputs are unbounded, and the streaming learner's steps make "
                 "them diverge without a LayerNorm (docs/STREAMING.md); give --output-norm false to run without",
                 values["cell"])


def upgrade_core_alias(values: dict) -> dict:
    """``values`` with an old ``core`` key replaced by ``cell`` and ``learning`` (what it means). A ``core``
    beside a ``cell`` or ``learning`` that says otherwise is two spellings of one setting: refused."""
    if "core" not in values:
        return values
    values = dict(values)
    core = values.pop("core")
    if core not in CORE_ALIASES:
        raise SettingError(f"bad {{core}}; accepted: {', '.join(CORE_ALIASES)} (old names), or the settings "
                           f"{{cell:name}} ({', '.join(CELLS)}) and {{learning:name}} ({', '.join(LEARNING)})",
                           core=core, cell=True, learning=True)
    cell, learning = CORE_ALIASES[core]
    for name, meant in (("cell", cell), ("learning", learning)):
        if name in values and values[name] != meant:
            raise SettingError(f"{{core}} means cell={cell!r}, learning={learning!r}, but {{{name}}} is also "
                               "given; give one spelling", core=core, **{name: values[name]})
    values.update(cell=cell, learning=learning)
    return values
