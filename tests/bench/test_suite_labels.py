"""`rtrl bench suite`'s agents by label (issue 23): what each label trains, with which preset; --cells; the old
labels' records; one run of a paired cell through the suite."""
import json
from pathlib import Path

import numpy as np
import pytest

from rtrl.bench import suite, suite_tasks
from rtrl.bench.suite import SuiteConfig
from rtrl.bench.suite_labels import AGENTS, label_preset, label_settings
from rtrl.envs import make_env
from rtrl.models import Agent
from rtrl.runtime.config import resolve_config
from rtrl.settings import SettingError
from test_suite import TINY_TRAIN, tiny



def test_labels_name_agents_with_the_preset_of_their_cell_family():
    assert label_settings("rtrl-elstm") == {"core": "rtrl-elstm"} and label_settings("lstm") == {"core": "lstm"}
    assert label_settings("rtrl-rtu") == {"cell": "rtu", "learning": "rtrl"}
    assert label_settings("tbptt-clru") == {"cell": "clru", "learning": "tbptt"}
    assert label_settings("2x-exact-rtrl-elstm") == {"cell": "elstm", "learning": "rtrl", "num_layers": 2,
                                                     "multilayer": "exact"}
    presets = {label: label_preset(label, "memory-suite") for label in AGENTS}
    assert presets == {"rtrl-elstm": "memory-suite", "tbptt-elstm": "memory-suite", "lstm": "memory-suite",
                       "ff": "memory-suite", "rtrl-rtu": "memory-suite-rtu", "tbptt-rtu": "memory-suite-rtu",
                       "rtrl-clru": "memory-suite-clru", "tbptt-clru": "memory-suite-clru",
                       "2x-exact-rtrl-elstm": "memory-suite"}
    assert label_preset("rtrl-rtu", "memory") == "memory"   # no rtu preset of that family: the suite's own
    for label in AGENTS:   # what each label trains is the agent the library calls by that name
        cfg = resolve_config(presets[label], overrides=label_settings(label))
        assert cfg.label == {"lstm": "tbptt-lstm", "ff": "tbptt-ff"}.get(label, label)
    assert resolve_config("memory-suite-rtu").hidden_size == 864 and resolve_config("memory-suite-clru").hidden_size == 816
    with pytest.raises(SettingError, match="unknown suite label 'rtrl-gru'; accepted: rtrl-elstm, .*, rtrl-rtu"):
        label_settings("rtrl-gru")


@pytest.mark.popgym
def test_the_paired_cells_presets_have_the_elstms_parameter_count():
    """On average over the suite's tasks (the comment on the presets states the counts)."""
    def count(preset, env):
        cfg = resolve_config(preset, overrides=dict(env=env))
        spec = make_env(env, seed=0)
        agent = Agent(spec.observation_space.shape, spec.observation_space.dtype, spec.action_space.n,
                      cfg.model_config())
        return sum(p.numel() for p in agent.parameters())

    envs = [t.env for t in suite_tasks.TASKS]
    elstm = np.mean([count("memory-suite", env) for env in envs])
    assert elstm == pytest.approx(19_957, abs=1)
    for preset in ("memory-suite-rtu", "memory-suite-clru"):
        assert np.mean([count(preset, env) for env in envs]) == pytest.approx(elstm, rel=0.015)


def test_cells_selects_the_tiers_labels_of_those_cells():
    def labels(**options):
        return sorted({j.core for j in suite.plan(SuiteConfig(tier="full", **options).validate())})
    assert labels(cells="rtu,clru") == ["rtrl-clru", "rtrl-rtu"]
    assert labels(cells="elstm") == ["2x-exact-rtrl-elstm", "rtrl-elstm", "tbptt-elstm"]
    assert labels(cells="elstm", cores="rtrl-elstm,rtrl-rtu") == ["rtrl-elstm"]   # both must name it
    assert labels(cores="lstm,ff") == ["ff", "lstm"]   # --cores as before
    rtu = [j for j in suite.plan(SuiteConfig(tier="full", cells="rtu")) if j.task == "recall-2x30"]
    assert [(j.seed, j.preset, j.settings["cell"], j.settings["learning"]) for j in rtu] == [
        (s, "memory-suite-rtu", "rtu", "rtrl") for s in (0, 1, 2)]
    (stack,) = [j for j in suite.plan(SuiteConfig(tier="full", cells="elstm")) if j.task == "recall-2x30"
                and j.core == "2x-exact-rtrl-elstm"]
    assert (stack.seed, stack.preset, stack.settings["num_layers"], stack.settings["multilayer"]) == (
        0, "memory-suite", 2, "exact")
    assert stack.out.endswith("full/recall-2x30/2x-exact-rtrl-elstm-seed0")
    with pytest.raises(SettingError, match="cells='rtu,gru' names a cell with no agent in the full tier; accepted: "
                                           "elstm, lstm, ff, rtu, clru"):
        SuiteConfig(tier="full", cells="rtu,gru").validate()
    with pytest.raises(SettingError, match="cells='rtu' names a cell with no agent in the quick tier; accepted: elstm$"):
        SuiteConfig(cells="rtu").validate()


def test_the_committed_records_of_the_old_labels_still_load_as_finished_runs():
    results = Path(__file__).resolve().parents[2] / "docs/memory_suite"
    jobs = suite.plan(SuiteConfig(tier="full", results=str(results), runs="/nonexistent", cores="rtrl-elstm,lstm"))
    assert all(j.settings["core"] == j.core and "cell" not in j.settings and j.preset == "memory-suite" for j in jobs)
    loaded = [suite.load_result(j, j.preset) for j in jobs if j.task == "recall-2x30"]
    assert [(r["core"], r["seed"]) for r in loaded] == [("rtrl-elstm", 0), ("lstm", 0), ("rtrl-elstm", 1),
                                                        ("rtrl-elstm", 2)]


def test_a_paired_cell_label_runs_through_the_suite_with_its_preset(tmp_path, monkeypatch):
    cfg = tiny(tmp_path, tier="full", cells="rtu", seeds="0", tasks="recall-2x30")
    (result,) = suite.run(cfg, TINY_TRAIN, say=lambda *_: None)
    assert (result["core"], result["preset"], result["settings"]["cell"]) == ("rtrl-rtu", "memory-suite-rtu", "rtu")
    assert 0 <= result["score"] <= 1 and "rtrl train --preset memory-suite-rtu" in result["command"]
    (run,) = (tmp_path / "runs").glob("*/recall-2x30/rtrl-rtu-seed0")   # under the variant's name
    assert json.loads((run / "config.json").read_text())["cell"] == "rtu"
    assert next((tmp_path / "results").rglob("recall-2x30/rtrl-rtu-seed0.json")).exists()
    monkeypatch.setattr(suite, "train", lambda *a, **k: pytest.fail("a finished run ran again"))
    assert [r["score"] for r in suite.run(cfg, TINY_TRAIN, say=lambda *_: None)] == [result["score"]]


def test_the_report_says_which_labels_train_with_their_familys_preset(tmp_path):
    from rtrl.bench.suite_report import _presets
    cfg = tiny(tmp_path, tier="full")
    assert _presets(cfg, suite.plan(cfg)) == ("preset `memory-suite`; `memory-suite-rtu` for rtrl-rtu; "
                                              "`memory-suite-clru` for rtrl-clru")
    assert _presets(cfg, suite.plan(tiny(tmp_path, tier="full", cells="lstm"))) == "preset `memory-suite`"
