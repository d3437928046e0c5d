"""The memory suite's tasks (each with why it needs memory), their chance levels and the normalisation of
scores by them: 0 at chance, 1 at the task's best score."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtrl.envs import make_env
from rtrl.records.files import write_text_atomically


@dataclass(frozen=True)
class SuiteTask:
    name: str
    env: str
    score: str       # what is scored: "success_rate" or "mean_return" (of the greedy evaluation)
    maximum: float   # the best score the task allows
    chance: float | None   # a memoryless policy's score where it is exact; None: measured by a random policy
    why: str         # why the task needs memory


TASKS = (
    SuiteTask("RepeatPreviousEasy", "popgym:RepeatPreviousEasy", "mean_return", 1.0, None,
              "name the suit of the card shown 4 steps earlier; the card in view says nothing about it"),
    SuiteTask("AutoencodeEasy", "popgym:AutoencodeEasy", "mean_return", 1.0, None,
              "a deck of cards is shown one by one, then must be named back in reverse order without seeing it"),
    # the POPGym paper's Stateless CartPole is PositionOnlyCartPole in popgym 1.0.7
    SuiteTask("StatelessCartPoleEasy", "popgym:PositionOnlyCartPoleEasy", "mean_return", 1.0, None,
              "cart-pole with positions but no velocities: velocities must be inferred from past positions"),
    SuiteTask("NoisyStatelessCartPoleEasy", "popgym:NoisyPositionOnlyCartPoleEasy", "mean_return", 1.0, None,
              "as StatelessCartPole with Gaussian noise on the positions: filter over time as well"),
    SuiteTask("recall-2x30", "memory:delayed_recall?cues=2&delay=30", "success_rate", 1.0, 1 / 2,
              "one of 2 cues, asked for after 30 blank steps (3x the unroll of 10)"),
    SuiteTask("recall-8x30", "memory:delayed_recall?cues=8&delay=30", "success_rate", 1.0, 1 / 8,
              "one of 8 cues (3 bits), asked for after 30 blank steps"),
    SuiteTask("recall-2x300", "memory:delayed_recall?cues=2&delay=300", "success_rate", 1.0, 1 / 2,
              "one of 2 cues, asked for after 300 blank steps (30x the unroll)"),
    SuiteTask("sequence-4x3x50", "memory:sequence_recall?cues=4&length=3&delay=50", "mean_return", 1.0, 1 / 4,
              "3 cues of 4 symbols shown in turn, named back in order after 50 blank steps: 3 facts held "
              "53 steps each"),
)
TASK_NAMES = tuple(t.name for t in TASKS)


def chance_level(env: str, score: str, episodes: int = 2000, seed: int = 0) -> tuple[float, float]:
    """(mean, standard error) of ``score`` per episode under a uniformly random policy."""
    environment = make_env(env, seed=seed, training=False)
    environment.action_space.seed(seed)
    values = []
    try:
        for _ in range(episodes):
            environment.reset()
            while True:
                *_, terminated, truncated, info = environment.step(environment.action_space.sample())
                if terminated or truncated:
                    record = info["episode"]
                    values.append(record["success"] if score == "success_rate" else record["return"])
                    break
    finally:
        environment.close()
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))


def chance_levels(directory: str | Path, tasks=TASKS, episodes: int = 2000) -> dict[str, dict]:
    """Each task's chance score: exact where known, else a random policy's (cached in DIRECTORY/chance.json)."""
    path = Path(directory) / "chance.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    levels = {}
    for task in tasks:
        if task.chance is not None:
            levels[task.name] = {"chance": task.chance, "stderr": 0.0, "how": "exact"}
            continue
        key = f"{task.env}|{task.score}|{episodes}"
        if key not in cache:
            mean, stderr = chance_level(task.env, task.score, episodes)
            cache[key] = {"chance": mean, "stderr": stderr, "how": f"random policy, {episodes} episodes"}
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomically(path, json.dumps(cache, indent=2) + "\n")
        levels[task.name] = cache[key]
    return levels


def normalise(score: float, chance: float, maximum: float) -> float:
    """(score − chance) / (maximum − chance): 0 at chance, 1 at the best score."""
    if maximum <= chance:
        raise ValueError(f"maximum {maximum} must exceed chance {chance}")
    return (score - chance) / (maximum - chance)
