"""`rtrl train`: the R2AC actor-learner loop, its run directory, checkpoints and resume.

Run directory:
    config.json       the full resolved settings
    metrics.csv       steps, frames, wall time, returns, success, losses, steps/s (one row per log interval)
    tensorboard/      TensorBoard event files of the same numbers
    checkpoint.pt     model, optimizer, schedule, step counters, RNG states (written atomically)
    curve.png         the learning curve, drawn at the end
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import random
import signal
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from rtrl.algos import impala_loss, linear_decay
from rtrl.files import write_atomically, write_text_atomically
from rtrl.runtime.actor import EnvSpec, make_agent
from rtrl.runtime.config import TrainConfig, add_config_arguments, resolve_config
from rtrl.runtime.protocols import frames_per_step

# frames = environment frames (steps × the Atari frame skip or DMLab action repeat, else = steps)
METRIC_COLUMNS = ("step", "frames", "wall_time", "sps", "updates", "episodes", "mean_return", "mean_length", "success_rate",
                  "total_loss", "pg_loss", "baseline_loss", "entropy_loss", "grad_norm", "lr")


def rng_states() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=False)


class RunDirectory:
    """Creates, checks and resumes a run directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.checkpoint_path = self.path / "checkpoint.pt"
        self.metrics_path = self.path / "metrics.csv"

    def existing_config(self) -> dict | None:
        return json.loads(self.config_path.read_text()) if self.config_path.exists() else None

    def prepare(self, cfg: TrainConfig, force: bool) -> dict | None:
        """Write config.json; return the checkpoint to resume from (or None for a fresh run)."""
        self.path.mkdir(parents=True, exist_ok=True)
        old = self.existing_config()
        if old is not None:  # settings added to rtrl since the run started take their defaults
            old = {**TrainConfig().to_dict(), **old}
        if old is not None and old != cfg.to_dict():
            differing = sorted(k for k in set(old) | set(cfg.to_dict()) if old.get(k) != cfg.to_dict().get(k))
            if not force:
                details = ", ".join(f"{k}: {old.get(k)!r} -> {cfg.to_dict().get(k)!r}" for k in differing)
                raise ValueError(f"{self.path} holds a run with a different config ({details}); use the same "
                                 "settings to resume it, another --out for a new run, or --force to resume it "
                                 "with the new settings")
        write_text_atomically(self.config_path, json.dumps(cfg.to_dict(), indent=2) + "\n")
        checkpoint = load_checkpoint(self.checkpoint_path) if self.checkpoint_path.exists() else None
        self._trim_metrics(checkpoint["steps"] if checkpoint else 0)
        return checkpoint

    def _trim_metrics(self, steps: int) -> None:
        """Drop metric rows written after the checkpoint we resume from (they will be produced again)."""
        if not self.metrics_path.exists():
            return
        with self.metrics_path.open() as f:
            rows = list(csv.DictReader(f))
        kept = [r for r in rows if float(r["step"]) <= steps] if steps else []
        with self.metrics_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
            writer.writeheader()
            writer.writerows(kept)


class MetricsLog:
    def __init__(self, run: RunDirectory):
        new = not run.metrics_path.exists()
        self.file = run.metrics_path.open("a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=METRIC_COLUMNS)
        if new:
            self.writer.writeheader()
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tensorboard = SummaryWriter(str(run.path / "tensorboard"))
        except ImportError:  # tensorboard is a dependency; stay usable without it
            self.tensorboard = None

    def write(self, row: dict) -> None:
        self.writer.writerow({k: row.get(k, "") for k in METRIC_COLUMNS})
        self.file.flush()
        if self.tensorboard is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and not math.isnan(value):
                    self.tensorboard.add_scalar(key, value, row["step"])

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def stem_parameter_names(model, include_fc: bool) -> list[str]:
    """Names of the stem's parameters that --load-stem copies: all but its final ``fc`` layer (and that
    too with ``include_fc``)."""
    names = [n for n, _ in model.named_parameters() if n.startswith("stem.")]
    if include_fc and not any(n.startswith("stem.fc.") for n in names):
        raise ValueError(f"--load-fc: this run's stem ({type(model.stem).__name__}) has no final fc layer")
    return [n for n in names if include_fc or not n.startswith("stem.fc.")]


def load_stem(model, source: str | Path, include_fc: bool) -> list[str]:
    """Copy the stem's parameters (conv layers; the final fc too with ``include_fc``) from the
    checkpoint.pt of another run (or a run directory holding one); returns the names copied."""
    path = Path(source)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.exists():
        raise ValueError(f"--load-stem {str(source)!r}: no such checkpoint file")
    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise ValueError(f"--load-stem {str(path)!r} is not a checkpoint.pt of `rtrl train` (no 'model' entry)")
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


def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else math.nan


def train(cfg: TrainConfig, out: str | Path, force: bool = False, backend_factory=None, progress: bool = True) -> dict:
    """Train R2AC (or a baseline core) as ``cfg`` says, in the run directory ``out``; return a summary.

    ``backend_factory(cfg, spec, model)`` provides the actors (default: the local multiprocess backend).
    """
    run = RunDirectory(out)
    checkpoint = run.prepare(cfg, force)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={cfg.device!r} but CUDA is not available here; use --device cpu")
    torch.set_num_threads(cfg.learner_threads)
    torch.manual_seed(cfg.seed)
    spec = EnvSpec.probe(cfg.env, cfg.env_options)
    model = make_agent(cfg, spec)
    if cfg.load_stem:
        loaded = stem_parameter_names(model, cfg.load_fc)
        if checkpoint is None:  # a resumed run has the loaded stem in its own checkpoint
            load_stem(model, cfg.load_stem, cfg.load_fc)
        if cfg.freeze_stem:  # frozen: no gradient, not in the optimizer, still in the state dict
            for name, parameter in model.named_parameters():
                if name in loaded:
                    parameter.requires_grad_(False)
    model = model.to(device)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.RMSprop(trained, lr=cfg.lr, alpha=cfg.rmsprop_alpha, eps=cfg.rmsprop_eps)
    steps, updates, wall_offset = 0, 0, 0.0
    recent = deque(maxlen=cfg.stats_window)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        steps, updates, wall_offset = checkpoint["steps"], checkpoint["updates"], checkpoint["wall_time"]
        recent.extend(checkpoint.get("recent_episodes", []))
        set_rng_states(checkpoint["rng"])

    def save() -> None:
        checkpoint_state = {
            "config": cfg.to_dict(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": {"kind": "linear", "lr": cfg.lr, "total_steps": cfg.total_steps},
            "steps": steps, "updates": updates, "wall_time": wall_offset + time.monotonic() - start,
            "recent_episodes": list(recent), "rng": rng_states(),
        }
        write_atomically(run.checkpoint_path, lambda tmp: torch.save(checkpoint_state, tmp))

    start = time.monotonic()
    if steps >= cfg.total_steps:
        return _summary(run, steps, recent, finished=True)
    if backend_factory is None:
        from rtrl.runtime.local import make_backend as backend_factory
    backend = backend_factory(cfg, spec, model)
    log = MetricsLog(run)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.total_steps, initial=steps, unit="step", dynamic_ncols=True, smoothing=0.1)
    frame_skip = frames_per_step(cfg.env, cfg.env_options)
    last_log = last_ckpt = time.monotonic()
    steps_at_log = steps
    losses: list[dict] = []
    interrupted = False
    previous_sigterm = _sigterm_as_interrupt()
    try:
        while steps < cfg.total_steps:
            batch, state, episodes = backend.next_batch()
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            state = {k: v.to(device, non_blocking=True) for k, v in state.items()}
            lr = cfg.lr * linear_decay(steps, cfg.total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, stats = impala_loss(model, batch, state, cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(trained, cfg.grad_norm_clip))
            stats["lr"] = lr
            optimizer.step()
            backend.publish(model)
            steps += cfg.unroll_length * cfg.batch_size
            updates += 1
            recent.extend(episodes)
            losses.append(stats)
            now = time.monotonic()
            if bar is not None:
                bar.update(cfg.unroll_length * cfg.batch_size)
            if now - last_log >= cfg.log_interval or steps >= cfg.total_steps:
                row = _metrics_row(steps, wall_offset + now - start, (steps - steps_at_log) / (now - last_log),
                                   updates, recent, losses, frame_skip)
                log.write(row)
                if bar is not None:
                    bar.set_postfix(sps=f"{row['sps']:.0f}", ret=f"{row['mean_return']:.3f}",
                                    **({"success": f"{row['success_rate']:.2f}"} if not math.isnan(row["success_rate"]) else {}))
                last_log, steps_at_log, losses = now, steps, []
            if now - last_ckpt >= cfg.checkpoint_interval:
                save()
                last_ckpt = now
    except KeyboardInterrupt:
        interrupted = True
    finally:
        _restore_sigterm(previous_sigterm)
        if bar is not None:
            bar.close()
        backend.close()
        save()
        log.close()
    summary = _summary(run, steps, recent, finished=not interrupted)
    if interrupted:
        print(f"interrupted at {steps} steps; checkpoint written; resume with the same command (--out {run.path})")
    return summary


def _sigterm_as_interrupt():
    """Treat SIGTERM like Ctrl-C (checkpoint, stop the actors) while training; returns the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _metrics_row(steps, wall, sps, updates, recent, losses, frames_per_step: int = 1) -> dict:
    row = {"step": steps, "frames": steps * frames_per_step, "wall_time": round(wall, 3), "sps": sps, "updates": updates, "episodes": len(recent),
           "mean_return": _mean(e["return"] for e in recent), "mean_length": _mean(e["length"] for e in recent),
           "success_rate": _mean(e["success"] for e in recent)}
    for key in ("total_loss", "pg_loss", "baseline_loss", "entropy_loss", "grad_norm", "lr"):
        row[key] = _mean(s[key] for s in losses)
    return row


def _summary(run, steps, recent, finished: bool) -> dict:
    return {"run": str(run.path), "steps": steps, "finished": finished, "episodes_in_window": len(recent),
            "mean_return": _mean(e["return"] for e in recent), "success_rate": _mean(e["success"] for e in recent)}


def run_cli(args: argparse.Namespace) -> int:
    from rtrl.runtime.local import ActorError
    try:
        cfg = resolve_config(args)
        summary = train(cfg, args.out, force=args.force, progress=not args.no_progress)
    except ValueError as error:
        print(f"rtrl train: error: {error}")
        return 2
    except ActorError as error:  # an environment or actor crashed; the checkpoint was written
        print(f"rtrl train: error: {error}")
        return 1
    print(f"steps {summary['steps']}: mean return {summary['mean_return']:.3f}"
          + (f", success rate {summary['success_rate']:.3f}" if not math.isnan(summary["success_rate"]) else "")
          + f" over the last {summary['episodes_in_window']} training episodes")
    if summary["steps"] > 0 and not args.no_plot:
        try:
            from rtrl.plotting import plot_runs
            metric = "success_rate" if not math.isnan(summary["success_rate"]) else "mean_return"
            print(f"learning curve: {plot_runs([args.out], metric=metric, x='step', out=Path(args.out) / 'curve.png')}")
        except Exception as error:  # a plot must never cost the run
            print(f"could not draw the learning curve: {error}")
    return 0 if summary["finished"] else 130


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train an R2AC agent (IMPALA actor-learner with an RTRL eLSTM core) or a baseline",
        description="Train R2AC. Settings resolve as: defaults < --preset < --config FILE < flags. "
                    "Running again with the same --out resumes the run from its checkpoint.")
    add_config_arguments(parser)
    parser.add_argument("--out", required=True, help="run directory (created; resumed if it holds a run)")
    parser.add_argument("--force", action="store_true",
                        help="resume a run directory even though its config differs (the new settings win)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-plot", action="store_true", help="do not draw curve.png at the end")
    parser.set_defaults(func=run_cli)
