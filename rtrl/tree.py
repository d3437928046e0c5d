"""Structures of tensors (dataclasses, dicts, tuples, lists) mapped leaf by leaf.

The agent's state and a rollout are typed dataclasses holding tensors; moving one to a device,
cloning it, copying it into a shared buffer or concatenating several along the batch is one
``map_tensors`` call over its leaves, whatever the core (an RTRL eLSTM's c and sensitivities, an
LSTM's h and c, nothing for a feed-forward core).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from torch import Tensor

__all__ = ["map_tensors", "tensors_of"]


def map_tensors(fn: Callable[..., Tensor], tree: Any, *others: Any) -> Any:
    """A structure like ``tree`` with ``fn(leaf, *corresponding leaves of others)`` at every tensor.

    Dataclass fields, dict values, tuple and list items are followed; other values (strings,
    numbers, None) are kept from ``tree``. The structures must match (same keys, same lengths).
    """
    if isinstance(tree, Tensor):
        return fn(tree, *others)
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        changes = {f.name: map_tensors(fn, getattr(tree, f.name), *(getattr(o, f.name) for o in others))
                   for f in dataclasses.fields(tree) if f.init}
        return dataclasses.replace(tree, **changes)
    if isinstance(tree, dict):
        for other in others:
            if other.keys() != tree.keys():
                raise ValueError(f"structures differ: keys {sorted(tree)} and {sorted(other)}")
        return {k: map_tensors(fn, v, *(o[k] for o in others)) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        for other in others:
            if len(other) != len(tree):
                raise ValueError(f"structures differ: lengths {len(tree)} and {len(other)}")
        return type(tree)(map_tensors(fn, v, *(o[i] for o in others)) for i, v in enumerate(tree))
    return tree


def tensors_of(tree: Any) -> list[Tensor]:
    """Every tensor leaf of ``tree``, in ``map_tensors`` order."""
    found: list[Tensor] = []
    map_tensors(lambda t: found.append(t) or t, tree)
    return found
