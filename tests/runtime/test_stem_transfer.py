"""A pre-trained stem copied from another run's checkpoint (and frozen), as the paper does for DMLab."""
import csv

import pytest
import torch

from conftest import PROCGEN, image_config, make_run
from rtrl.cli import main
from rtrl.envs import EnvSpec
from rtrl.runtime.checkpoints import load_checkpoint, load_stem
from rtrl.runtime.config import TrainConfig, build_agent
from rtrl.runtime.train import train

pytestmark = pytest.mark.procgen   # image_config, make_run: ProcGen runs

def stem_tensors(state: dict, part: str) -> dict:
    return {k: v.clone() for k, v in state.items() if k.startswith(part)}


def test_load_and_freeze_stem(tmp_path):
    source = tmp_path / "source"
    make_run(source, seed=7)
    src = load_checkpoint(source / "checkpoint.pt")["model"]
    # loading copies the conv part (and the fc only with include_fc)
    cfg = image_config(seed=2)
    model = build_agent(cfg, EnvSpec.probe(cfg.env, cfg.env_options))
    before_fc = stem_tensors(model.state_dict(), "stem.fc.")
    names = load_stem(model, source, include_fc=False)
    assert names and all(n.startswith("stem.convs.") for n in names)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in stem_tensors(src, "stem.convs.").items())
    assert all(torch.equal(state[k], v) for k, v in before_fc.items())
    load_stem(model, source / "checkpoint.pt", include_fc=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in stem_tensors(src, "stem.fc.").items())
    # a value tower's stem (critic separate) takes the same copy
    towered = build_agent(image_config(seed=2, critic="separate"), EnvSpec.probe(cfg.env, cfg.env_options))
    names = load_stem(towered, source, include_fc=False)
    assert sum(n.startswith("value_tower.stem.convs.") for n in names) == sum(n.startswith("stem.convs.") for n in names)
    state = towered.state_dict()
    assert all(torch.equal(state["value_tower." + k], v) for k, v in stem_tensors(src, "stem.convs.").items())
    # a frozen, loaded stem stays equal to the source through training (and is saved); the rest trains
    out = tmp_path / "frozen"
    code = main(["train", "--out", str(out), "--env", PROCGEN, "--total-steps", "8", "--unroll-length", "2",
                 "--batch-size", "2", "--envs-per-actor", "2", "--num-actors", "0", "--hidden-size", "8",
                 "--stem", "resnet", "--stem-hidden-size", "16", "--lr", "0.05", "--seed", "2", "--no-progress",
                 "--no-plot", "--load-stem", str(source), "--load-fc", "--freeze-stem"])
    assert code == 0
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["config"]["load_stem"] == str(source) and ckpt["config"]["freeze_stem"] is True
    assert all(torch.equal(ckpt["model"][k], v) for k, v in stem_tensors(src, "stem.").items())
    torch.manual_seed(2)  # the initial weights of that run
    initial = build_agent(image_config(seed=2), EnvSpec.probe(PROCGEN, {})).state_dict()
    assert not torch.equal(ckpt["model"]["policy.weight"], initial["policy.weight"])
    trained_params = sum(len(group["params"]) for group in ckpt["learner"]["optimizer"]["param_groups"])
    assert trained_params == len([k for k in ckpt["model"] if not k.startswith("stem.")])
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["frames"] == rows[-1]["step"] == "8"
    # resume: the frozen stem stays frozen without reading the source again
    (source / "checkpoint.pt").unlink()
    summary = train(TrainConfig.from_dict(dict(ckpt["config"], total_steps=12)), out, force=True, progress=False)
    assert summary["steps"] == 12
    assert all(torch.equal(load_checkpoint(out / "checkpoint.pt")["model"][k], v)
               for k, v in stem_tensors(src, "stem.").items())


def test_stem_mismatch_and_missing_checkpoint_errors(tmp_path, capsys):
    source = tmp_path / "source"
    make_run(source, stem_hidden_size=32)
    cfg = image_config()
    model = build_agent(cfg, EnvSpec.probe(cfg.env, cfg.env_options))
    load_stem(model, source, include_fc=False)  # the conv part matches
    with pytest.raises(ValueError, match=r"stem.fc.weight is \(32, 2048\) there, \(16, 2048\) here"):
        load_stem(model, source, include_fc=True)
    vector = tmp_path / "vector"
    make_run(vector, env="gym:CartPole-v1", stem="mlp")
    with pytest.raises(ValueError, match="does not match this run's stem: it has no stem.convs.0.weight"):
        load_stem(model, vector, include_fc=False)
    with pytest.raises(ValueError, match="no such checkpoint file"):
        load_stem(model, tmp_path / "nowhere.pt", include_fc=False)
    code = main(["train", "--out", str(tmp_path / "run"), "--env", PROCGEN, "--num-actors", "0",
                 "--freeze-stem"])
    assert code == 2 and "give --load-stem too" in capsys.readouterr().err
