"""--obs-norm: running observation statistics against a plain numpy reference, where they live in the
agent, and how they travel through a run (learner update, actors, checkpoint, resume, evaluation)."""
import numpy as np
import pytest
import torch

from conftest import small_config
from rtrl.eval.evaluation import EvalConfig, evaluate
from rtrl.models import Agent, ObservationNormalizer
from rtrl.runtime.backends import make_backend
from rtrl.runtime.checkpoints import load_checkpoint
from rtrl.runtime.train import train
from rtrl.settings import SettingError


def test_running_statistics_equal_those_of_all_observations_seen():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, (n, 4)) * np.array([1, 10, 0.1, 1]) for n in (1, 7, 50, 3)]
    norm = ObservationNormalizer(4, clip=5.0)
    x = torch.tensor(batches[0])
    torch.testing.assert_close(norm(x), x.clamp(-5, 5), rtol=1e-8, atol=0)   # before any update: the identity, clipped
    for batch in batches:
        norm.update(torch.tensor(batch).reshape(-1, 1, 4))   # any leading shape
    seen = np.concatenate(batches)
    np.testing.assert_allclose(norm.mean.numpy(), seen.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(norm.var.numpy(), seen.var(0), rtol=1e-10)
    assert int(norm.count) == len(seen)
    probe = rng.normal(3.0, 20.0, (6, 4))
    expected = np.clip((probe - seen.mean(0)) / np.sqrt(seen.var(0) + 1e-8), -5, 5)
    out = norm(torch.tensor(probe, dtype=torch.float32))
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="clip must be > 0, got 0"):
        ObservationNormalizer(4, clip=0)


def test_the_agent_normalises_vector_observations_only_when_asked():
    plain = Agent((5,), torch.float32, 3, core="ff", hidden_size=4, stem="identity")
    assert plain.obs_norm is None and not any(k.startswith("obs_norm") for k in plain.state_dict())
    agent = Agent((5,), torch.float32, 3, core="ff", hidden_size=4, stem="identity", obs_norm=True)
    assert {"obs_norm.count", "obs_norm.mean", "obs_norm.var"} <= set(agent.state_dict())
    obs = torch.randn(2, 3, 5) * 100 + 50
    agent.obs_norm.update(obs)
    features = agent.core_input(obs, torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool))[..., :-1]
    torch.testing.assert_close(features.mean((0, 1)), torch.zeros(5), atol=1e-5, rtol=0)
    with pytest.raises(SettingError, match=r"obs_norm normalises vector observations; this env's are \(3, 64, 64\) "
                                           r"torch.uint8") as error:
        Agent((3, 64, 64), torch.uint8, 3, core="ff", hidden_size=4, obs_norm=True)
    assert error.value.render(lambda name: "--" + name.replace("_", "-")).startswith("--obs-norm normalises")   # as a flag


def test_statistics_come_from_the_trained_batches_reach_the_actors_and_resume(tmp_path):
    cfg = small_config(obs_norm=True, total_steps=200, num_actors=1, log_interval=1000.0)   # 10 updates of 5 x 4
    seen, shared_counts = [], []

    def recording_backend(*args):
        backend = make_backend(*args)
        real = backend.next_batch

        def next_batch():   # the actors' copy holds the statistics of every batch trained on so far
            shared_counts.append(int(backend.weights.model.obs_norm.count))
            batch, episodes = real()
            seen.append(batch.obs[1:].reshape(-1, batch.obs.shape[-1]).double().numpy().copy())
            return batch, episodes

        backend.next_batch = next_batch
        return backend

    train(cfg, tmp_path, backend_factory=recording_backend, progress=False)
    assert shared_counts == [20 * k for k in range(10)]
    model = load_checkpoint(tmp_path / "checkpoint.pt")["model"]
    all_seen = np.concatenate(seen)
    assert int(model["obs_norm.count"]) == 200 == len(all_seen)
    np.testing.assert_allclose(model["obs_norm.mean"].numpy(), all_seen.mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model["obs_norm.var"].numpy(), all_seen.var(0), rtol=1e-8, atol=1e-12)
    train(small_config(obs_norm=True, total_steps=300, num_actors=1, log_interval=1000.0), tmp_path, force=True,
          progress=False)   # resumed: the statistics go on counting
    assert int(load_checkpoint(tmp_path / "checkpoint.pt")["model"]["obs_norm.count"]) == 300
    evaluate(tmp_path, EvalConfig(episodes=2, num_envs=2))   # an evaluation reads them and changes nothing
    assert int(load_checkpoint(tmp_path / "checkpoint.pt")["model"]["obs_norm.count"]) == 300
