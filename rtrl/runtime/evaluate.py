"""`rtrl eval DIR`: episodes from a zero state with the trained agent, the recurrent state carried
through each episode; writes DIR/eval.json (mean, std and per-episode returns). ``--protocol``
plays the paper's evaluation of an Atari, ProcGen or DMLab run (rtrl.runtime.protocols);
``--video`` also records one episode as an animated GIF (rtrl.runtime.video)."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from rtrl.runtime.actor import EnvBatch, EnvSpec, make_agent, sample_actions
from rtrl.runtime.config import TrainConfig
from rtrl.runtime.protocols import PROTOCOLS, aggregate, plan, summary_lines
from rtrl.files import write_text_atomically
from rtrl.runtime.train import load_checkpoint


def load_trained_agent(run_dir: str | Path):
    """(config, env spec, agent in eval mode on the CPU, checkpoint) of a run directory."""
    run_dir = Path(run_dir)
    checkpoint_path = run_dir / "checkpoint.pt"
    if not checkpoint_path.exists():
        raise ValueError(f"{run_dir} has no checkpoint.pt: is it a run directory of `rtrl train`?")
    checkpoint = load_checkpoint(checkpoint_path)
    cfg = TrainConfig.from_dict(checkpoint["config"])
    spec = EnvSpec.probe(cfg.env, cfg.env_options)
    agent = make_agent(cfg, spec)
    agent.load_state_dict(checkpoint["model"])
    agent.eval()
    return cfg, spec, agent, checkpoint


def run_episodes(cfg, agent, episodes: int, greedy: bool, seed: int, num_envs: int = 8,
                 env_id: str | None = None, env_options: dict | None = None, observe=None) -> list[dict]:
    """Play ``episodes`` full episodes (``training=False`` envs) and return their info["episode"] dicts.

    Each environment starts from a zero agent state that is zeroed again at every episode start.
    ``observe(obs)``, if given, sees the (num_envs, ...) observations before every action.
    """
    num_envs = max(1, min(num_envs, episodes))
    envs = EnvBatch(env_id or cfg.env, cfg.env_options if env_options is None else env_options,
                    [seed * 100_003 + 50_000 + i for i in range(num_envs)], training=False)
    generator = torch.Generator().manual_seed(seed)
    results: list[dict] = []
    state = agent.initial_state(num_envs)
    if cfg.core == "rtrl-elstm":  # evaluation needs no sensitivities
        state = {"c": state["c"]}
    obs = torch.as_tensor(envs.obs)
    reward = torch.zeros(num_envs)
    done = torch.ones(num_envs, dtype=torch.bool)
    try:
        with torch.no_grad():
            while len(results) < episodes:
                if observe is not None:
                    observe(obs.numpy())
                out, state = agent(obs[None], reward[None], done[None], state, carry_sensitivity=False)
                logits = out.policy_logits[0]
                if greedy:
                    action = logits.argmax(-1)
                else:
                    action = sample_actions(logits, generator)
                obs_np, reward_np, done_np, finished = envs.step(action.numpy())
                for i in np.flatnonzero(~np.isnan(finished[:, 0])):
                    if len(results) < episodes:
                        success = None if math.isnan(finished[i, 2]) else float(finished[i, 2])
                        results.append({"return": float(finished[i, 0]), "length": int(finished[i, 1]),
                                        "success": success})
                obs, reward, done = torch.as_tensor(obs_np).clone(), torch.as_tensor(reward_np), torch.as_tensor(done_np)
    finally:
        envs.close()
    return results


def summarise(results: list[dict]) -> dict:
    returns = np.array([r["return"] for r in results], dtype=np.float64)
    summary = {"episodes": len(results), "mean_return": float(returns.mean()), "std_return": float(returns.std()),
               "returns": returns.tolist(), "lengths": [r["length"] for r in results]}
    successes = [r["success"] for r in results if r["success"] is not None]
    if successes:
        summary["success_rate"] = float(np.mean(successes))
    return summary


def evaluate(run_dir: str | Path, episodes: int | None = None, greedy: bool = True, seed: int = 0,
             num_envs: int = 8, protocol: str = "none", runs: int | None = None,
             video: str | Path | None = None) -> dict:
    """Evaluate a run as ``protocol`` says (``episodes``/``runs`` override its counts); write eval.json."""
    cfg, spec, agent, checkpoint = load_trained_agent(run_dir)
    sets = plan(protocol, cfg.env, cfg.env_options, seed, episodes, runs)
    if video is not None:  # fail before the evaluation if no frame can be drawn
        from rtrl.runtime.video import check_renderable
        check_renderable(spec.obs_shape, video)
    torch.manual_seed(seed)
    summaries = [summarise(run_episodes(cfg, agent, s.episodes, greedy, s.seed, num_envs, env_options=s.env_options))
                 for s in sets]
    summary = aggregate(protocol, cfg.env, sets, summaries)
    if video is not None:
        from rtrl.runtime.video import record_video
        summary["video"] = str(record_video(cfg, agent, video, greedy, seed, sets[0].env_options))
    summary.update({"env": cfg.env, "core": cfg.core, "greedy": greedy, "seed": seed,
                    "checkpoint_steps": checkpoint["steps"]})
    write_text_atomically(Path(run_dir) / "eval.json", json.dumps(summary, indent=2) + "\n")
    return summary


def run_cli(args: argparse.Namespace) -> int:
    if args.episodes is not None and args.episodes < 1:
        print(f"rtrl eval: error: --episodes must be >= 1, got {args.episodes}")
        return 2
    video = None if args.video is None else (args.video or Path(args.run_dir) / "eval.gif")
    try:
        summary = evaluate(args.run_dir, args.episodes, args.greedy, args.seed, args.num_envs, args.protocol,
                           args.runs, video)
    except ValueError as error:
        print(f"rtrl eval: error: {error}")
        return 2
    if args.protocol != "none":
        print("\n".join(summary_lines(summary)))
    else:
        _print_summary(summary, args.greedy)
    if "video" in summary:
        print(f"wrote {summary['video']}")
    print(f"wrote {Path(args.run_dir) / 'eval.json'}")
    return 0


def _print_summary(summary: dict, greedy: bool) -> None:
    line = (f"{summary['episodes']} episodes ({'greedy' if greedy else 'sampled'}): "
            f"mean return {summary['mean_return']:.3f} ± {summary['std_return']:.3f}")
    if "success_rate" in summary:
        line += f", success rate {summary['success_rate']:.3f}"
    print(line)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a trained run: episodes from a zero state -> eval.json",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("run_dir", help="run directory written by `rtrl train`")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="none",
                        help="none: --episodes episodes; atari: 5 runs x 30 episodes, capped at 27k steps, "
                             "human-normalised; procgen: 200 episodes on the training levels and on the "
                             "held-out sets starting at 1000/1200/1400; dmlab: 3 runs x 100 episodes, "
                             "human-normalised")
    parser.add_argument("--episodes", type=int, default=None,
                        help="episodes (per run or level set of a protocol); None: 100, or the protocol's 30/200/100")
    parser.add_argument("--runs", type=int, default=None, help="runs of the atari/dmlab protocol (None: 5 / 3)")
    parser.add_argument("--video", nargs="?", const="", default=None, metavar="PATH",
                        help="also record one greedy/sampled episode as an animated GIF (default DIR/eval.gif)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--greedy", dest="greedy", action="store_true", default=True,
                      help="take the most probable action")
    # default=SUPPRESS: the shared dest's default (True) is --greedy's; help would call it --sample's default
    mode.add_argument("--sample", dest="greedy", action="store_false", default=argparse.SUPPRESS,
                      help="sample actions from the policy instead of --greedy")
    parser.add_argument("--seed", type=int, default=0, help="seeds the environments and the action sampling")
    parser.add_argument("--num-envs", type=int, default=8, help="environments run side by side")
    parser.set_defaults(func=run_cli)
