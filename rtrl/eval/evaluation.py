"""Evaluating a trained run: the episodes a protocol asks for, their summary in DIR/eval.json, and
optionally a video of one episode.

``EvalConfig`` holds the settings (``rtrl eval DIR`` makes one flag of each); ``evaluate(run_dir, cfg)``
plays the episodes of ``cfg.protocol`` (``rtrl.eval.protocols``) greedily (or sampled) from a zero state.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from rtrl.eval.episodes import load_trained_agent, run_episodes, summarise
from rtrl.eval.protocols import PROTOCOLS, aggregate, plan
from rtrl.records.files import write_text_atomically
from rtrl.records.run_guard import RunGuard
from rtrl.settings import POSITIVE_INT, SEED, optional, setting, validate


@dataclass
class EvalConfig:
    protocol: str = setting("none", "none: the episodes below; atari: 5 runs x 30 episodes, capped at 27k steps, "
                            "human-normalised; procgen: 200 episodes on the training levels and on the held-out sets "
                            "starting at 1000/1200/1400; dmlab: 3 runs x 100 episodes, human-normalised",
                            choices=PROTOCOLS)
    episodes: int | None = setting(None, "episodes (per run or level set of a protocol); none: 100, or the "
                                   "protocol's 30/200/100", check=optional(POSITIVE_INT))
    runs: int | None = setting(None, "runs of the atari/dmlab protocol (none: 5 / 3)", check=optional(POSITIVE_INT))
    greedy: bool = setting(True, "take the most probable action (false: sample from the policy, as --sample)")
    seed: int = setting(0, "seeds the environments and the action sampling", check=SEED)
    num_envs: int = setting(8, "environments run side by side", check=POSITIVE_INT)
    video: str | None = setting(None, "also record one episode as an animated GIF at this path (the flag alone: "
                                "DIR/eval.gif)", flag={"nargs": "?", "const": "", "metavar": "PATH"})

    def validate(self) -> "EvalConfig":
        return validate(self)


def evaluate(run_dir: str | Path, cfg: EvalConfig | None = None, env_fn=None) -> dict:
    """Evaluate a run as ``cfg`` says; write and return eval.json's content. ``env_fn``: the callable that
    made the run's ``python:`` env (``rtrl.runtime.train.train``)."""
    cfg = (cfg or EvalConfig()).validate()
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return _evaluate(run_dir, cfg, env_fn)   # load_trained_agent says what is wrong with it
    # eval.json (and eval.gif) go into the run: the same lock as a run of `rtrl train`, and only a training run
    with RunGuard(run_dir, "train", setting=None).acquire(create=False):
        return _evaluate(run_dir, cfg, env_fn)


def _evaluate(run_dir: Path, cfg: EvalConfig, env_fn) -> dict:
    train_cfg, spec, agent, checkpoint = load_trained_agent(run_dir, env_fn)
    sets = plan(cfg.protocol, train_cfg.env, train_cfg.env_options, cfg.seed, cfg.episodes, cfg.runs)
    video = None if cfg.video is None else Path(cfg.video or run_dir / "eval.gif")
    if video is not None:  # fail before the evaluation if no frame can be drawn
        from rtrl.eval.video import check_renderable
        check_renderable(spec.obs_shape, video)
    torch.manual_seed(cfg.seed)
    summaries = [summarise(run_episodes(train_cfg, agent, s.episodes, cfg.greedy, s.seed, cfg.num_envs,
                                        env_options=s.env_options, env_fn=env_fn)) for s in sets]
    summary = aggregate(cfg.protocol, train_cfg.env, sets, summaries)
    if video is not None:
        from rtrl.eval.video import record_video
        summary["video"] = str(record_video(train_cfg, agent, video, cfg.greedy, cfg.seed, sets[0].env_options,
                                            env_fn=env_fn))
    summary.update({"env": train_cfg.env, "core": train_cfg.label, "cell": train_cfg.cell,
                    "learning": train_cfg.learning, "greedy": cfg.greedy, "seed": cfg.seed,
                    "checkpoint_steps": checkpoint["steps"]})
    write_text_atomically(run_dir / "eval.json", json.dumps(summary, indent=2) + "\n")
    return summary
