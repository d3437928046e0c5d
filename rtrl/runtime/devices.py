"""The devices and CPUs this machine has, for the checks of settings that name them."""
from __future__ import annotations

import os

import torch

from rtrl.settings import SettingError, literal


def cpu_count() -> int:
    """CPUs of this machine (the bound of thread-count settings)."""
    return os.cpu_count() or 1


def machine_devices() -> list[str]:
    """The torch devices this machine has: cpu, then cuda:0..N-1 and mps where present."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def check_device(value, setting: str = "device", present: bool = True) -> torch.device:
    """``value`` as a torch device this machine has; a ``SettingError`` naming the value and this machine's
    devices otherwise (an unknown name, a malformed index, or a device that is absent here)."""
    here = f"accepted: cpu, cuda, cuda:N, mps; this machine has: {', '.join(machine_devices())}"
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise SettingError(f"bad {{{setting}}}; " + literal(here), **{setting: value}) from None
    if device.type == "cpu" and device.index not in (None, 0):
        raise SettingError(f"bad {{{setting}}}; " + literal(here), **{setting: value})
    if not present and device.type in ("cuda", "mps"):   # a config for another machine: only its form
        return device
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index is not None and device.index >= count):
            absent = "CUDA is not available here" if count == 0 else f"this machine has {count} CUDA device(s)"
            raise SettingError(f"bad {{{setting}}}: {absent}; " + literal(here), **{setting: value})
    elif device.type == "mps":
        if "mps" not in machine_devices():
            raise SettingError(f"bad {{{setting}}}: MPS is not available here; " + literal(here), **{setting: value})
    elif device.type != "cpu":
        raise SettingError(f"bad {{{setting}}}; " + literal(here), **{setting: value})
    return device
