"""Checkpoint files: reading them safely, the random-number state they carry, and copying a stem out of one.

A checkpoint of `rtrl train` is a dict: ``format`` (``run_dir.CHECKPOINT_FORMAT``), ``config`` (TrainConfig
as a dict), ``model`` and ``learner`` state dicts (format 1: ``optimizer``), ``steps``, ``updates``, ``wall_time``, ``recent_episodes``, ``nonfinite_updates``,
``actor_restarts`` and ``rng``. Every value is a tensor, a number, a string, None, or a list, tuple or dict of them, so
that ``torch.load(weights_only=True)`` reads it: loading a file never runs code from it, and a file
holding anything else (a crafted pickle) is refused before any of it runs.

The oldest checkpoints (of format 1) hold numpy's RNG state as a numpy array. They still
load, with ``weights_only=True`` and exactly the numpy globals that rebuild a plain array allowed
(``_reconstruct``, ``ndarray``, ``dtype`` and the uint32 dtype: constructors of data that call nothing
else); the next checkpoint the run writes has the new form.
"""
from __future__ import annotations

import io
import math
import random
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from rtrl.models import Agent
from rtrl.runtime.sizes import tensor_bytes
from rtrl.settings import SettingError, literal

_MULTIARRAY = getattr(getattr(np, "_core", None), "multiarray", None) or np.core.multiarray   # numpy 2 or 1
# what a numpy array in a pickle needs, under the names numpy 1 and numpy 2 write (see the module docstring)
_NUMPY_ARRAY_GLOBALS = [(_MULTIARRAY._reconstruct, "numpy.core.multiarray._reconstruct"),
                        (_MULTIARRAY._reconstruct, "numpy._core.multiarray._reconstruct"),
                        np.ndarray, np.dtype, type(np.dtype(np.uint32))]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and why."""


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The checkpoint of `rtrl train` at ``path``, read with ``weights_only=True`` (no code in the file
    runs); a :class:`CheckpointError` naming the file for anything that is not such a checkpoint."""
    path = Path(path)
    try:
        file = path.open("rb")
    except OSError as error:
        raise CheckpointError(f"{path} cannot be read: {error.strerror or error}") from None
    with file:
        if path.stat().st_size == 0:
            raise CheckpointError(f"{path} cannot be loaded: the file is empty")
        try:
            with warnings.catch_warnings(), torch.serialization.safe_globals(_NUMPY_ARRAY_GLOBALS):
                warnings.simplefilter("ignore")   # torch warns about the pickle protocol of foreign files
                checkpoint = torch.load(file, map_location=map_location, weights_only=True)
        except Exception as error:  # torch reports a damaged file with many types (RuntimeError, OSError, ...)
            refused = re.search(r"GLOBAL ([\w.]+)", str(error))
            if refused:
                raise CheckpointError(f"{path} cannot be loaded: it holds a Python object ({refused.group(1)}) that "
                                      "no checkpoint of rtrl holds, and loading it could run code; refused") from None
            raise CheckpointError(f"{path} cannot be loaded: it is not a complete checkpoint file (cut short, "
                                  "damaged, or not written by torch.save); nothing in it was run") from None
    if not (isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict)
            and isinstance(checkpoint.get("config"), dict) and "steps" in checkpoint):
        raise CheckpointError(f"{path} is not a checkpoint of `rtrl train` (it holds no config, model weights and "
                              "step count)")
    check_contents(checkpoint, path)
    return checkpoint


# counters a checkpoint carries: (key, whether it must be an integer); absent ones (older files) start at 0
COUNTERS = (("steps", True), ("updates", True), ("nonfinite_updates", True), ("actor_restarts", True),
            ("wall_time", False))


def _bad(path, what: str, value, accepted: str) -> CheckpointError:
    shown = repr(value) if not isinstance(value, (dict, list, tuple)) else f"a {type(value).__name__}"
    return CheckpointError(f"{path} holds a bad {what} ({shown}); accepted: {accepted}; the file was not used")


def check_contents(checkpoint: dict, path: str | Path) -> None:
    """Validate what a checkpoint holds, as any input is: its counters are non-negative finite numbers
    (integers where they count), ``config`` a table, ``model`` (and ``learner``/``optimizer``) tables of
    tensors, ``recent_episodes`` a list of episodes with a numeric return and length and a success of
    None or a number. A :class:`CheckpointError` names the file and the first bad value."""
    for key, integer in COUNTERS:
        if key not in checkpoint:
            continue
        value = checkpoint[key]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (integer and not isinstance(value, int)) or not math.isfinite(value) or value < 0:
            raise _bad(path, key, value, "a non-negative integer" if integer else "a non-negative finite number")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in checkpoint["model"].items()):
        raise _bad(path, "model", checkpoint["model"], "a table of named tensors (a state dict)")
    for key in ("learner", "optimizer"):
        if key in checkpoint and not isinstance(checkpoint[key], dict):
            raise _bad(path, key, checkpoint[key], "a table (a state dict)")
    episodes = checkpoint.get("recent_episodes", [])
    if not isinstance(episodes, (list, tuple)):
        raise _bad(path, "recent_episodes", episodes, "a list of episodes")
    for episode in episodes:
        if not (isinstance(episode, dict) and _real(episode.get("return")) and _real(episode.get("length"))
                and (episode.get("success") is None or _real(episode.get("success")))):
            raise _bad(path, "episode in recent_episodes", episode if not isinstance(episode, dict) else
                       {k: episode.get(k) for k in ("return", "length", "success")},
                       "a table of return and length (numbers) and success (a number or none)")
    if "rng" in checkpoint and not isinstance(checkpoint["rng"], dict):
        raise _bad(path, "rng", checkpoint["rng"], "a table of random-number states")


def _real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def nonfinite_tensors(state: dict) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold a NaN or an infinity."""
    return [name for name, tensor in state.items()
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(tensor.isfinite().all())]


def check_finite(checkpoint: dict, path: str | Path) -> None:
    """A :class:`CheckpointError` if the checkpoint's weights hold a NaN or an infinity (a diverged model)."""
    bad = nonfinite_tensors(checkpoint["model"])
    if bad:
        raise CheckpointError(f"{path} holds non-finite weights (NaN or infinity in {len(bad)} tensor(s): "
                              f"{', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): the model diverged "
                              "when this checkpoint was written")


def load_weights(model: torch.nn.Module, checkpoint: dict, path: str | Path) -> None:
    """The checkpoint's model weights into ``model``; a :class:`CheckpointError` naming the first tensors that
    do not fit (missing, extra, or of another shape)."""
    theirs, ours = checkpoint["model"], model.state_dict()
    misfits = ([f"{k} is {tuple(theirs[k].shape)} there, {tuple(v.shape)} here"
                for k, v in ours.items() if k in theirs and theirs[k].shape != v.shape] +
               [f"no {k} there" for k in ours if k not in theirs] + [f"no {k} here" for k in theirs if k not in ours])
    if misfits:
        raise CheckpointError(f"the model in {path} does not fit these settings ({'; '.join(misfits[:3])}"
                              f"{'; ...' if len(misfits) > 3 else ''})")
    model.load_state_dict(theirs)


def rng_states() -> dict:
    """The random-number states of torch, numpy and Python, as tensors and plain data."""
    kind, key, position, has_gauss, cached_gaussian = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": {"bit_generator": kind, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(position),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}}


def set_rng_states(states: dict) -> None:
    """Restore :func:`rng_states` (or the numpy-array form of the oldest checkpoints)."""
    numpy_state = states["numpy"]
    if isinstance(numpy_state, dict):
        numpy_state = (numpy_state["bit_generator"], numpy_state["key"].numpy().astype(np.uint32),
                       numpy_state["pos"], numpy_state["has_gauss"], numpy_state["cached_gaussian"])
    torch.set_rng_state(states["torch"])
    np.random.set_state(numpy_state)
    random.setstate(states["python"])


def checkpoint_bytes(checkpoint: dict) -> bytes:
    """A checkpoint serialised as ``torch.save`` writes it (in memory: a full disk then shows as the OSError
    of the file write, not as torch's "unexpected pos" message)."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def estimated_checkpoint_size(model: torch.nn.Module, learner=None) -> int:
    """Bytes of a checkpoint of ``model`` and ``learner``: the weights, the learner's state as it saves it (the
    streaming learner's traces: up to three copies of the weights per stream), at least one more copy of the
    weights (RMSprop's running averages, which it creates at its first step), and some margin."""
    weights = tensor_bytes(model.state_dict())
    learner_state = 0 if learner is None else tensor_bytes(learner.state_dict())
    return weights + max(weights, learner_state) + 1_000_000


def stem_parameter_names(model: Agent, include_fc: bool) -> list[str]:
    """Names of the stem's parameters that ``load_stem`` copies: all but its final ``fc`` layer (and that
    too with ``include_fc``); a value tower's stem (``value_tower.stem.*``) takes the same copy."""
    names = [n for n, _ in model.named_parameters() if n.startswith(("stem.", "value_tower.stem."))]
    if include_fc and not any(n.startswith("stem.fc.") for n in names):
        raise SettingError(f"{{load_fc}}: this run's stem ({type(model.stem).__name__}) has no final fc layer",
                           load_fc=include_fc)
    return [n for n in names if include_fc or not _source_name(n).startswith("stem.fc.")]


def _source_name(name: str) -> str:
    """The name in the source checkpoint of a stem parameter ``load_stem`` copies (one stem there, maybe two here)."""
    return name.removeprefix("value_tower.")


def load_stem(model: Agent, source: str | Path, include_fc: bool) -> list[str]:
    """Copy the stem's parameters (conv layers; the final fc too with ``include_fc``) from the
    checkpoint.pt of another run (or a run directory holding one); returns the names copied."""
    path = Path(source)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.exists():
        raise SettingError("{load_stem}: no such checkpoint file", load_stem=str(source))
    try:
        checkpoint = load_checkpoint(path)
        check_finite(checkpoint, path)
    except CheckpointError as error:
        raise SettingError("{load_stem:name}: " + literal(str(error)), load_stem=str(source)) from None
    theirs = checkpoint["model"]
    ours = dict(model.named_parameters())
    names = stem_parameter_names(model, include_fc)
    missing = list(dict.fromkeys(_source_name(n) for n in names if _source_name(n) not in theirs))
    if missing:
        raise ValueError(f"the stem in {str(path)!r} does not match this run's stem: it has no {', '.join(missing)}")
    mismatched = [f"{_source_name(n)} is {tuple(theirs[_source_name(n)].shape)} there, {tuple(ours[n].shape)} here"
                  for n in names if theirs[_source_name(n)].shape != ours[n].shape]
    if mismatched:
        raise ValueError(f"the stem in {str(path)!r} does not match this run's stem: {'; '.join(mismatched)}")
    with torch.no_grad():
        for n in names:
            ours[n].copy_(theirs[_source_name(n)])
    return names


def transfer_stem(model: Agent, source: str, include_fc: bool, freeze: bool, resuming: bool) -> None:
    """``load_stem`` for a new run (a resumed run has the copied stem in its own checkpoint); with
    ``freeze`` the copied parameters get no gradient and stay out of the optimizer."""
    copied = stem_parameter_names(model, include_fc)
    if not resuming:
        load_stem(model, source, include_fc)
    if freeze:
        for name, parameter in model.named_parameters():
            if name in copied:
                parameter.requires_grad_(False)
