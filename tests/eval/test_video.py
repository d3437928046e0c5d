"""An evaluation episode as an animated GIF."""
import numpy as np
import pytest
from PIL import Image

from conftest import make_run
from rtrl.cli import main
from rtrl.envs import EnvSpec
from rtrl.eval.video import observation_to_image, record_video
from rtrl.runtime.config import build_agent

pytestmark = pytest.mark.procgen   # make_run: a ProcGen run

def test_video_is_a_valid_gif(tmp_path, capsys):
    cfg = make_run(tmp_path)
    agent = build_agent(cfg, EnvSpec.probe(cfg.env, cfg.env_options)).eval()
    path = record_video(cfg, agent, tmp_path / "clip.gif", greedy=False, seed=0, max_frames=12)
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 12 and gif.size == (256, 256)
    # Atari: the latest gray frame of the stack
    stack = np.zeros((4, 84, 84), np.uint8)
    stack[-1, 0, 0] = 200
    image = observation_to_image(stack)
    assert image.shape == (336, 336) and image[0, 0] == 200 and image[-1, -1] == 0
    # vector observations: a clear error before any episode is played
    vector = tmp_path / "vector"
    make_run(vector, env="gym:CartPole-v1", stem="mlp")
    assert main(["eval", str(vector), "--episodes", "1", "--video"]) == 2
    assert "--video needs image observations" in capsys.readouterr().err
    assert main(["eval", str(tmp_path), "--episodes", "1", "--video", str(tmp_path / "clip.mp4")]) == 2
    assert "ending in .gif" in capsys.readouterr().err


def test_a_video_path_that_cannot_be_a_file_is_refused_before_the_episodes(tmp_path, capsys, monkeypatch):
    # a directory, or a path under a file: an OSError (exit 1) once every episode had been played, eval.json unwritten
    make_run(tmp_path)
    (tmp_path / "clips.gif").mkdir()
    (tmp_path / "notes").write_text("mine")
    played = []
    monkeypatch.setattr("rtrl.eval.evaluation.run_episodes", lambda *a, **k: played.append(1) or [])
    for path, reason in [(tmp_path / "clips.gif", "is a directory"),
                         (tmp_path / "notes" / "clip.gif", f"{tmp_path / 'notes'} is a file, not a directory")]:
        assert main(["eval", str(tmp_path), "--episodes", "1", "--video", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"bad --video='{path}'" in err and reason in err and "accepted: a .gif file path" in err, err
    assert not played and (tmp_path / "notes").read_text() == "mine"
