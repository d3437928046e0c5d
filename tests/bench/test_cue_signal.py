"""bench/cue_signal.py: the cue's trace at the query step of delayed recall through an untrained eLSTM."""
import numpy as np
import pytest

from conftest import load_bench_script
from rtrl.envs.registry import make_env


@pytest.fixture(scope="module")
def cue_signal():
    return load_bench_script("cue_signal")


@pytest.mark.parametrize("cue", [0, 1])
def test_the_inputs_are_the_observations_the_task_gives(cue_signal, cue):
    env = make_env("memory:delayed_recall?cues=2&delay=5", seed=0)
    for _ in range(20):   # until the task draws this cue
        obs, _ = env.reset()
        if obs[cue] == 1:
            break
    seen, done = [obs], False
    while not done:
        obs, _, terminated, truncated, _ = env.step(0)
        done = terminated or truncated
        if not done:
            seen.append(obs)
    np.testing.assert_array_equal(np.stack(seen), cue_signal.recall_inputs(5)[:, cue].numpy())


def test_forget_bias_3_loses_the_cue_over_long_delays_where_a_longer_time_scale_keeps_it(cue_signal):
    plain = [cue_signal.cue_signal(d, {"forget_bias": 3.0}, seed=0) for d in (32, 128)]
    slow = cue_signal.cue_signal(128, {"forget_bias": 5.0}, seed=0)
    assert plain[1] < plain[0] / 5      # σ(3)^96 ≈ 0.01
    assert slow > 5 * plain[1]          # σ(5)^128 ≈ 0.42 of a (1 − σ(5)) input


def test_bad_arguments_are_named(cue_signal, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["cue_signal.py", "--delays", "0", "8"])
    with pytest.raises(SystemExit):
        cue_signal.main()
    assert "bad values [0]" in capsys.readouterr().err


def test_the_linear_rtu_keeps_far_more_of_the_cue_at_delay_128_than_the_presets_elstm(cue_signal):
    """Its recurrence adds the cue unscaled and some of its |λ| are near 1 (ring init, r in [0, 1]): by how much
    varies with the init (seeds 0-4: 4e-4 to 3e-2), so the medians of 10 inits are compared."""
    import statistics
    from rtrl.cells import RTU
    rtu = statistics.median(cue_signal.cue_signal(128, {}, seed=s, cell_type=RTU) for s in range(10))
    elstm = statistics.median(cue_signal.cue_signal(128, {"forget_bias": 3.0}, seed=s) for s in range(10))
    assert rtu > 30 * elstm   # 84x with these 10 inits (the median of 20: ~600x)
    assert "linear RTU" in " ".join(cue_signal.INITS)
