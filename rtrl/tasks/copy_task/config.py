"""The settings of one copy-task run: ``CopyTaskConfig``, its checks, and the models' default rates.

Every field is a documented ``setting``: the library checks it (``check_config``) and the command
line makes one flag of it (``rtrl copy-task --hidden-size 64``). The config is saved with the run
(checkpoint.pt and results.json).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from rtrl.models import ELEMENTWISE_CELLS, ModelConfig
from rtrl.models.config import FORGET_BIAS, refuse_unread_model_settings
from rtrl.records.files import file_in_the_way
from rtrl.settings import (LEARNING_RATE, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, Check, SettingError,
                           literal, optional, setting, validate)

# '' is no directory: it wrote nothing, silently
DIRECTORY_PATH = Check("a directory path (made if missing), or none", lambda v: v is None or bool(v.strip()))

# the copy task's cells (its recurrent network reads one-hot tokens; no stem) and how it learns: rtrl
# fully online (a step per token), bptt through each whole sequence (a step per batch of them)
CELLS = ELEMENTWISE_CELLS + ("lstm",)
LEARNING = ("rtrl", "bptt")
# the old model names, spelled <cell>-<learning>: the models of the paper's Sec. 4.1
MODELS = ("lstm-bptt", "elstm-bptt", "elstm-rtrl")
LOSS_ON = ("sequence", "output")
# "both-bits": every output-phase bit counts (the task as specified). "paper-code": the task as the paper's
# released code poses it, for comparison only (``paper_code_view``). Its generator pads with the blank
# token, so the input is the bits then L blanks and the target is L' blanks, the bits, then L - L' blanks.
# Its target vocabulary, built in order of appearance from the first target line (blank, 0, …, 1), gives
# the bit "1" id 2, which is also the id its loss ignores as padding (ignore_index=2) and its sequence
# accuracy counts as right whatever is predicted. Every other position counts, the input phase too.
# Outputting 0 for the L' steps after the bits and blank elsewhere -- counting, no copying -- scores 100%.
SCORING = ("both-bits", "paper-code")
MULTILAYER = ("exact", "per-layer")
DEVICES = ("cpu", "cuda")
# default Adam learning rates, from 45-60 s probes at L=10 on a 2-core CPU (docs/COPY_TASK.md):
# for eLSTM 1e-2 beat 3e-3 and 1e-3 under both BPTT and online RTRL; the other element-wise cells take
# the eLSTM's (not probed)
DEFAULT_LR = {"lstm-bptt": 3e-3, "elstm-bptt": 1e-2, "elstm-rtrl": 1e-2}


def default_lr(cell: str) -> float:
    return 3e-3 if cell == "lstm" else 1e-2


@dataclass
class CopyTaskConfig:
    """One run of the copy task (the task, models and scoring: ``rtrl.tasks.copy_task``)."""

    cell: str = setting("elstm", "recurrent cell: elstm (the paper's), indrnn, lru, rtu, clru (complex LRU) "
                        "(element-wise; rtu and clru output 2N numbers), lstm (torch.nn.LSTM; bptt only)", choices=CELLS)
    learning: str = setting("rtrl", "rtrl: fully online, one step per token (element-wise cells); bptt: one step "
                            "per batch of whole sequences", choices=LEARNING)
    model: str | None = setting(None, "the old name of a cell and learning pair (<cell>-<learning>): lstm-bptt, "
                                "elstm-bptt, elstm-rtrl; replaces cell and learning", choices=MODELS)
    length: int = setting(50, "L: patterns have 1..L bits, sequences 2L tokens", check=POSITIVE_INT)
    hidden_size: int = setting(256, "recurrent units N (per layer)", check=POSITIVE_INT)
    num_layers: int = setting(1, "stacked recurrent layers (nn.LSTM layers, or an rtrl.StackedRNN of the cell)",
                              check=POSITIVE_INT)
    multilayer: str = setting(
        "exact", "learning rtrl with num_layers > 1: exact (RTRL through all layers) or per-layer (each layer's "
        "own RTRL; gradients between layers only within the current call)", choices=MULTILAYER)
    forget_bias: float = setting(
        0.0, "initial eLSTM forget-gate bias (paper: 0); the other cells have their own init (refused for them)",
        check=FORGET_BIAS)
    lr: float | None = setting(
        None, "Adam learning rate (betas 0.9/0.995, eps 1e-9); none = 3e-3 for the lstm, 1e-2 for the "
        "element-wise cells", check=optional(LEARNING_RATE))
    grad_clip: float = setting(1.0, "max global gradient norm; 0 disables clipping", check=NON_NEGATIVE)
    batch_size: int = setting(
        128, "sequences per update (BPTT, --full-sequence) or run side by side (online RTRL)",
        check=POSITIVE_INT)
    full_sequence: bool = setting(
        False, "learning rtrl: step once per batch of whole sequences instead of after every token")
    loss_on: str = setting(
        "sequence", "positions with loss: 'sequence' = input phase (target blank) and output phase; "
        "'output' = output phase only. Both-bits scoring is always the output phase.", choices=LOSS_ON)
    scoring: str = setting(
        "both-bits", "'both-bits': every output bit counts. 'paper-code': for comparison only, the task as "
        "the paper's released code poses it: padding is blank (input and target), and bit-1 targets are "
        "dropped from the loss and count as right whatever is predicted (its vocabulary gives bit 1 the "
        "ignored padding id), so counting L' steps and outputting 0 scores 100%", choices=SCORING)
    epochs: int = setting(100, "max passes over the training split", check=POSITIVE_INT)
    max_steps: int | None = setting(None, "max optimizer steps; none = no limit", check=optional(POSITIVE_INT))
    time_budget: float | None = setting(
        None, "stop training after this much wall time; none = no limit", check=optional(POSITIVE),
        flag={"metavar": "SECONDS"})
    eval_every: int | None = setting(
        None, "validate every this many training sequences; none = once per epoch",
        check=optional(POSITIVE_INT), flag={"metavar": "SEQUENCES"})
    train_size: int = setting(10000, "training sequences (paper: 10000)", check=POSITIVE_INT)
    valid_size: int = setting(1000, "validation sequences (paper: 1000)", check=POSITIVE_INT)
    test_size: int = setting(1000, "test sequences (paper: 1000)", check=POSITIVE_INT)
    disjoint_min_length: int = setting(
        8, "patterns of at least this many bits occur in one split only", check=POSITIVE_INT)
    eval_batch_size: int = setting(500, "sequences per eval batch", check=POSITIVE_INT)
    seed: int = setting(0, "seeds data, initialisation and training order", check=NON_NEGATIVE_INT)
    device: str = setting("cpu", "torch device", choices=DEVICES)
    threads: int | None = setting(
        1, "torch CPU threads; 0 or none = torch's choice. On a shared/busy CPU more threads than free "
        "cores can be 10x slower (OpenMP spinning)", check=optional(NON_NEGATIVE_INT))
    out: str | None = setting(
        None, "run directory for metrics.csv, checkpoint.pt, learning_curve.png and results.json; "
        "none = runs/copy-<cell>-<learning>-L<length>-s<seed> (from the library: no files)")
    save_data: str | None = setting(None, "also write the splits to DIR/<split>.npz", flag={"metavar": "DIR"},
                                    check=DIRECTORY_PATH)

    def __post_init__(self) -> None:
        if self.model in MODELS:   # the old name: <cell>-<learning>, spelled so from here on
            (self.cell, self.learning), self.model = self.model.split("-"), None

    @property
    def label(self) -> str:
        """The model's name, <cell>-<learning>: elstm-rtrl, lstm-bptt, lru-rtrl..."""
        return f"{self.cell}-{self.learning}"

    def model_config(self) -> ModelConfig:
        """The recurrent network as the library's model config (the copy task has no stem)."""
        return ModelConfig(cell=self.cell, learning=self.learning, hidden_size=self.hidden_size,
                           num_layers=self.num_layers, multilayer=self.multilayer, stem="identity",
                           forget_bias=self.forget_bias)

    def check_together(self) -> None:
        """The rules between settings (``validate`` calls it after checking each one)."""
        if self.cell == "lstm" and self.learning == "rtrl":
            raise SettingError(f"{{cell}} is not an element-wise cell, so it cannot learn by {{learning}}; accepted: "
                               f"bptt for it, or an element-wise cell ({', '.join(ELEMENTWISE_CELLS)})",
                               cell=self.cell, learning=self.learning)
        if self.full_sequence and self.learning != "rtrl":
            raise SettingError("{full_sequence} applies to learning rtrl only (BPTT always steps once per "
                               "batch of sequences), not to {learning}", full_sequence=True, learning=self.learning)
        if self.multilayer != "exact" and self.learning != "rtrl":
            raise SettingError("{multilayer} applies to learning rtrl only (BPTT backpropagates through "
                               "all layers), not to {learning}", multilayer=self.multilayer, learning=self.learning)
        # the eLSTM's forget bias for another cell, per-layer for one layer: ignored, so refused (as rtrl train does)
        refuse_unread_model_settings(dataclasses.asdict(self.model_config()),
                                     dict(forget_bias=self.forget_bias, multilayer=self.multilayer),
                                     dict(forget_bias=CopyTaskConfig.forget_bias, multilayer=CopyTaskConfig.multilayer))


def check_config(config: CopyTaskConfig) -> CopyTaskConfig:
    """``config`` if every setting is accepted and its device exists here; else a ``SettingError``
    naming the setting, its value and what is accepted."""
    validate(config)
    if config.device == "cuda" and not torch.cuda.is_available():
        raise SettingError("bad {device}: CUDA is not available here; accepted here: cpu", device="cuda")
    if config.save_data:   # else an OSError after the data set was built, naming no flag
        path = Path(config.save_data)
        blocking = path if path.exists() and not path.is_dir() else file_in_the_way(path)
        if blocking is not None:
            raise SettingError("bad {save_data}: " + literal(f"{blocking} is a file, not a directory; ") +
                               "accepted: " + literal(DIRECTORY_PATH.accepted), save_data=config.save_data)
    return config
