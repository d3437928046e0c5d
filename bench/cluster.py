"""The object-store numbers of docs/CLUSTER.md: bytes per rollout at the paper's sizes, and what moving
one through Ray's object store costs on this machine.

For each of the paper's settings (the `dmlab`, `procgen` and `atari` presets: T, N, the 256-wide stem
and the observation size) it builds the rollout layout the actors fill (``empty_rollout`` with the
RTRL core's state) and adds up its tensors field by field; it also counts the agent's weights (sent
once per broadcast). Then it times a Ray actor returning such a rollout and the learner collating it
(median of ``--repeats``), and writes both tables into docs/CLUSTER.md.

    python bench/cluster.py                 # ~1 minute; starts a private Ray (2 CPUs, no dashboard)
    python bench/cluster.py --no-ray        # the byte counts only
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from rtrl.envs import EnvSpec  # noqa: E402
from rtrl.records.reports import command_line, record_section  # noqa: E402
from rtrl.runtime.backends.ray import decode, encode, import_ray  # noqa: E402
from rtrl.runtime.config import PRESETS, TrainConfig, build_agent  # noqa: E402
from rtrl.runtime.rollout import collate, empty_rollout  # noqa: E402
from rtrl.tree import tensors_of  # noqa: E402

# observation and action spaces of the paper's settings, as the adapters in rtrl/envs produce them (Atari: Pong's
# minimal action set)
SPECS = {"dmlab": EnvSpec((3, 72, 96), torch.uint8, 9), "procgen": EnvSpec((3, 64, 64), torch.uint8, 15),
         "atari": EnvSpec((4, 84, 84), torch.uint8, 6)}


def layout(preset: str, envs: int = 1):
    cfg = TrainConfig(**{**PRESETS[preset], "envs_per_actor": envs})
    model = build_agent(cfg, SPECS[preset])
    return cfg, model, empty_rollout(cfg.unroll_length, envs, SPECS[preset], model.initial_state(1))


def formula_bytes(T: int, N: int, D: int, obs_bytes: int, A: int, K: int = 2) -> int:
    """docs/CLUSTER.md's formula for one environment's rollout with the RTRL eLSTM state."""
    return (T + 1) * (obs_bytes + 4 * A + 4 + 1 + 8 + 12) + 8 + 4 * N * (1 + K * (D + 2))


def byte_table() -> str:
    rows = ["| setting | T | N | D | A | obs per step | obs | S of weight_x (2,N,D) | rest of the state | logits, "
            "actions, rewards, episodes | **one env's rollout** | 32-env learner batch | weights |",
            "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for preset in SPECS:
        cfg, model, rollout = layout(preset)
        obs, state = rollout.obs.nbytes, sum(t.nbytes for t in tensors_of(rollout.state))
        weight_x = rollout.state.sensitivity["weight_x"].nbytes
        total = sum(t.nbytes for t in tensors_of(rollout))
        weights = sum(t.nbytes for t in model.state_dict().values())
        D = rollout.state.sensitivity["weight_x"].shape[-1]
        spec = SPECS[preset]
        obs_bytes = rollout.obs[0, 0].nbytes
        assert total == formula_bytes(cfg.unroll_length, cfg.hidden_size, D, obs_bytes, spec.num_actions), preset
        rows.append(f"| {preset} | {cfg.unroll_length} | {cfg.hidden_size} | {D} | {spec.num_actions} | "
                    f"{'x'.join(map(str, SPECS[preset].obs_shape))} uint8 | {obs / 1e6:.2f} MB | "
                    f"{weight_x / 1e6:.2f} MB | {(state - weight_x) / 1e3:.1f} kB | {(total - obs - state) / 1e3:.1f} kB | "
                    f"**{total / 1e6:.2f} MB** | {32 * total / 1e6:.0f} MB | {weights / 1e6:.2f} MB |")
    return "\n".join(rows)


class Sender:
    """A Ray actor that returns one encoded rollout of a given layout, as RayActor.rollout does."""

    def __init__(self, preset: str, envs: int):
        self.rollout = layout(preset, envs)[2]
        for t in tensors_of(self.rollout):
            t.copy_(torch.randint(0, 2, t.shape).to(t.dtype))   # not all zeros

    def get(self):
        return encode(self.rollout)


def transfer_table(repeats: int, envs: int) -> str:
    ray = import_ray()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    rows = [f"| setting | rollout of {envs} envs | actor -> learner, collated: median ms | MB/s |", "|---|---:|---:|---:|"]
    try:
        for preset in SPECS:
            template = layout(preset, envs)[2]
            sender = ray.remote(Sender).options(num_cpus=1).remote(preset, envs)
            times = []
            for i in range(repeats + 1):
                start = time.perf_counter()
                batch, _ = collate([decode(ray.get(sender.get.remote()), template)])
                if i:   # the first includes the actor's start
                    times.append(time.perf_counter() - start)
            size = sum(t.nbytes for t in tensors_of(batch))
            ms = statistics.median(times) * 1e3
            rows.append(f"| {preset} | {size / 1e6:.1f} MB | {ms:.1f} | {size / 1e6 / (ms / 1e3):.0f} |")
            ray.kill(sender)
    finally:
        ray.shutdown()
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--envs", type=int, default=8, help="environments per actor for the transfer timing")
    parser.add_argument("--no-ray", action="store_true", help="only count bytes")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "CLUSTER.md"))
    args = parser.parse_args()
    table = byte_table()
    print(table)
    body = ("Bytes of one environment's rollout in the layout the actors fill (`rtrl/runtime/rollout.py`, "
            "RTRL eLSTM core, float32 unless stated), for the paper's settings; an actor's rollout is "
            "`envs_per_actor` times this, a learner batch `batch_size` (32) times.\n\n" + table + "\n")
    if not args.no_ray:
        transfer = transfer_table(args.repeats, args.envs)
        print(transfer)
        body += ("\nOne rollout of an actor with " + str(args.envs) + " environments, returned by a Ray actor as "
                 "numpy arrays (zero-copy out of the object store) and collated by the learner (one copy), on this "
                 "machine (one node: shared memory, no network):\n\n" + transfer + "\n")
    record_section(Path(args.doc), "bytes per rollout and the object store", body, command_line())
    print(f"recorded in {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
