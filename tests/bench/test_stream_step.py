"""bench/stream_step.py: a streaming step's cost by how its gradients are taken."""
import pytest

from conftest import load_bench_script


@pytest.fixture(scope="module")
def stream_step():
    return load_bench_script("stream_step")


def test_each_mode_takes_its_way_and_the_table_has_a_row_each(stream_step, monkeypatch, capsys, tmp_path):
    from rtrl.envs import EnvSpec
    from rtrl.runtime.config import resolve_config
    cfg = resolve_config("stream", overrides=dict(env="memory:delayed_recall?cues=2&delay=2", hidden_size=4))
    spec = EnvSpec.probe(cfg.env, cfg.env_options)
    ways = {}
    for mode in stream_step.MODES:
        source, learner = stream_step.make(cfg, spec, mode)
        ways[mode] = (learner.actor.closed_form, learner.actor.fused, source.fused)
        source.close()
    assert ways == {"closed form": (True, True, True), "batched autograd": (False, True, True),
                    "autograd through the engine": (False, False, False)}
    monkeypatch.setattr("sys.argv", ["stream_step.py", "--env", cfg.env, "--hidden-size", "4", "--steps", "5",
                                     "--warmup", "2", "--repeats", "2"])
    assert stream_step.main() == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| " + mode for mode in stream_step.MODES]
    assert rows[1].endswith("| 1.00 |")


def test_bad_arguments_are_named(stream_step, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["stream_step.py", "--steps", "0", "--warmup", "-1"])
    with pytest.raises(SystemExit):
        stream_step.main()
    assert "bad --steps=0, --warmup=-1" in capsys.readouterr().err
