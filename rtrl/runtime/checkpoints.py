"""Checkpoint files: reading them, the random-number state they carry, and copying a stem out of one.

A checkpoint of `rtrl train` is a dict: ``config`` (TrainConfig as a dict), ``model`` and
``optimizer`` state dicts, ``steps``, ``updates``, ``wall_time``, ``recent_episodes``, ``rng`` and
``actor_restarts``.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from rtrl.models import Agent
from rtrl.settings import SettingError


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=False)


def rng_states() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def stem_parameter_names(model: Agent, include_fc: bool) -> list[str]:
    """Names of the stem's parameters that ``load_stem`` copies: all but its final ``fc`` layer (and that
    too with ``include_fc``)."""
    names = [n for n, _ in model.named_parameters() if n.startswith("stem.")]
    if include_fc and not any(n.startswith("stem.fc.") for n in names):
        raise SettingError(f"{{load_fc}}: this run's stem ({type(model.stem).__name__}) has no final fc layer",
                           load_fc=include_fc)
    return [n for n in names if include_fc or not n.startswith("stem.fc.")]


def load_stem(model: Agent, source: str | Path, include_fc: bool) -> list[str]:
    """Copy the stem's parameters (conv layers; the final fc too with ``include_fc``) from the
    checkpoint.pt of another run (or a run directory holding one); returns the names copied."""
    path = Path(source)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.exists():
        raise SettingError("{load_stem}: no such checkpoint file", load_stem=str(source))
    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise SettingError("{load_stem} is not a checkpoint.pt of `rtrl train` (no 'model' entry)", load_stem=str(path))
    theirs = checkpoint["model"]
    ours = dict(model.named_parameters())
    names = stem_parameter_names(model, include_fc)
    missing = [n for n in names if n not in theirs]
    if missing:
        raise ValueError(f"the stem in {str(path)!r} does not match this run's stem: it has no {', '.join(missing)}")
    mismatched = [f"{n} is {tuple(theirs[n].shape)} there, {tuple(ours[n].shape)} here"
                  for n in names if theirs[n].shape != ours[n].shape]
    if mismatched:
        raise ValueError(f"the stem in {str(path)!r} does not match this run's stem: {'; '.join(mismatched)}")
    with torch.no_grad():
        for n in names:
            ours[n].copy_(theirs[n])
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
