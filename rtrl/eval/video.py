"""An evaluation episode as an animated GIF (``rtrl eval DIR --video [PATH]``), drawn from the observations.

Frames: an RGB image observation (3, H, W) as it is; a stack of grayscale frames (Atari: (4, 84, 84))
by its latest frame; a single-channel image as gray. Vector observations have no picture: an error.
Small frames are enlarged (nearest neighbour) so that the GIF is at least ``MIN_SIZE`` pixels high.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rtrl.eval.episodes import run_episodes
from rtrl.records.files import why_no_file_there
from rtrl.settings import SettingError, literal

MIN_SIZE = 256
FRAME_MS = 50          # 20 frames per second
MAX_FRAMES = 3000      # a greedy policy may never end its game: the GIF then shows its first MAX_FRAMES steps


class _EnoughFrames(Exception):
    pass


def check_renderable(obs_shape: tuple[int, ...], path: str | Path) -> None:
    """SettingError unless observations of ``obs_shape`` can be drawn and ``path`` names a .gif file."""
    if len(obs_shape) != 3:
        raise SettingError(f"{{video:name}} needs image observations (C, H, W); this environment's are "
                           f"{tuple(obs_shape)}", video=str(path))
    if Path(path).suffix.lower() != ".gif":
        raise SettingError("bad {video}: it writes an animated GIF; give a path ending in .gif", video=str(path))
    why = why_no_file_there(path)
    if why is not None:   # else an OSError once every episode has been played
        raise SettingError(f"bad {{video}}: {literal(why)}; accepted: a .gif file path (its directories are made)",
                           video=str(path))


def observation_to_image(obs: np.ndarray) -> np.ndarray:
    """uint8 (C, H, W) -> (H', W', 3) RGB or (H', W') gray, enlarged to at least MIN_SIZE pixels high."""
    channels = obs.shape[0]
    image = np.transpose(obs, (1, 2, 0)) if channels == 3 else obs[-1]
    scale = max(1, -(-MIN_SIZE // image.shape[0]))
    return np.ascontiguousarray(image.repeat(scale, axis=0).repeat(scale, axis=1))


def write_gif(frames: list[np.ndarray], path: str | Path, frame_ms: int = FRAME_MS) -> Path:
    from PIL import Image

    if not frames:
        raise ValueError("no frames to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
    return path


def record_video(cfg, agent, path: str | Path, greedy: bool, seed: int, env_options: dict | None = None,
                 max_frames: int = MAX_FRAMES, env_fn=None) -> Path:
    """Play one episode (as ``rtrl eval`` does) with one environment and write its frames to ``path``."""
    frames: list[np.ndarray] = []

    def observe(obs: np.ndarray) -> None:
        frames.append(observation_to_image(obs[0]))
        if len(frames) >= max_frames:
            raise _EnoughFrames

    try:
        run_episodes(cfg, agent, 1, greedy, seed, num_envs=1, env_options=env_options, observe=observe,
                     env_fn=env_fn)
    except _EnoughFrames:
        pass
    return write_gif(frames, path)
