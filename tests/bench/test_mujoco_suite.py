"""bench/mujoco_suite.py: records are kept per budget and per learner update; the table shows the preset's only."""
import json

import pytest

from conftest import load_bench_script


@pytest.fixture
def suite(tmp_path, monkeypatch):
    module = load_bench_script("mujoco_suite")
    monkeypatch.setattr(module, "RECORDS", tmp_path / "records")
    monkeypatch.setattr(module, "ROOT", tmp_path)   # the plot goes to tmp_path/docs
    (tmp_path / "docs").mkdir()
    return module


def _record(suite, name, seed, final, steps=300_000, update="preset"):
    record = {"task": "hopper-v", "env": suite.TASKS["hopper-v"], "core": "rtrl", "seed": seed, "total_steps": steps,
              "final_return": final, "curve": [[0, 0.0], [steps, final]]}
    if update == "preset":
        record["update"] = suite.preset_update()
    elif update is not None:
        record["update"] = update
    folder = suite.RECORDS / suite.budget_label(steps)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(record))


def test_the_table_holds_the_presets_update_at_the_budget_only(suite, tmp_path):
    from rtrl.runtime.config import PRESETS
    assert suite.preset_update() == {**{k: PRESETS["mujoco"][k] for k in suite.UPDATE if k not in suite.LATER},
                                     **suite.LATER}
    _record(suite, "a.json", 0, 800.0)
    _record(suite, "b.json", 1, 400.0)
    _record(suite, "old.json", 2, 190.0, update=None)   # a one-pass record from before the update was kept
    _record(suite, "other.json", 2, 5.0, update={"update_epochs": 2, "minibatches": 1, "policy_clip": 0.0})
    _record(suite, "longer.json", 2, 3000.0, steps=1_000_000)
    assert sorted(r["final_return"] for r in suite.load_records(300_000)) == [400.0, 800.0]
    assert [r["final_return"] for r in suite.load_records(1_000_000)] == [3000.0]
    doc = tmp_path / "MUJOCO.md"
    doc.write_text("before\n<!-- mujoco-table 300k -->\nold table\n<!-- /mujoco-table 300k -->\nafter\n")
    suite.report(doc, 300_000)
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old table" not in text
    assert "| 800, 400 |" in text and "(2 seeds)" in text and "3000" not in text and "190" not in text
    # the curve's last 20% of steps: one point each ([300k, final]), so the late means are the finals here
    assert "| 800, 400 | 600 ± " in text and "| 800, 400 |\n" in text
    assert suite.update_label(suite.preset_update()) in text and "![curves](records/300k/mujoco.png)" in text
    # another budget gets a section of its own, after the first, and leaves the first as it was
    suite.report(doc, 1_000_000)
    longer = doc.read_text()
    assert longer.index("<!-- /mujoco-table 300k -->") < longer.index("<!-- mujoco-table 1M -->")
    assert longer.endswith("after\n") and text[:text.index("<!-- /mujoco-table 300k -->")] in longer
    assert "| rtrl | 3000 (1 seed) | 3000 |" in longer and longer.count("| 800, 400 | 600 ± ") == 1
    assert (tmp_path / "records" / "1M" / "mujoco.png").exists()


def test_the_late_mean_averages_the_curve_over_the_last_fifth_of_the_steps(suite):
    record = {"total_steps": 1000, "final_return": 9.0, "curve": [[0, 100.0], [700, 50.0], [800, 10.0], [900, 20.0],
                                                                   [1000, 30.0]]}
    assert suite.late_mean(record) == 20.0   # the points at steps 800, 900 and 1000
    assert suite.late_mean(dict(record, curve=[[0, 1.0]])) == 9.0   # no point that late: the final return


def test_records_are_kept_per_budget(suite):
    """A run of another budget never replaces (or stands in for) a record: its file is in the budget's folder."""
    assert [suite.budget_label(n) for n in (300_000, 1_000_000, 2_500_000, 50_000, 12_345)] == [
        "300k", "1M", "2.5M", "50k", "12345"]
    assert suite.record_path("hopper-v", "rtrl", 0, 300_000) != suite.record_path("hopper-v", "rtrl", 0, 1_000_000)


def test_the_report_names_the_records_machines_not_the_reporting_one(suite, tmp_path, monkeypatch):
    """The table's machine line comes from the records, so a report from the same records is the same text
    (before, the load average of the moment changed it at every --report)."""
    _record(suite, "a.json", 0, 800.0)
    path = suite.RECORDS / "300k" / "a.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "machine": "Box A, 2 logical cores"}))
    _record(suite, "b.json", 1, 400.0)   # no machine: an older record
    doc = tmp_path / "MUJOCO.md"
    suite.report(doc, 300_000)
    first = doc.read_text()
    assert "on Box A, 2 logical cores; a machine not recorded." in first
    monkeypatch.setattr(suite, "machine_description", lambda load=True: "Other box, load average 9.99")
    suite.report(doc, 300_000)
    assert doc.read_text() == first


def test_another_update_keeps_records_and_a_section_of_its_own(suite, tmp_path, monkeypatch):
    """`--update-epochs 1` (say) is a variant: its records, run command and table never mix with the preset's."""
    variant = dict(suite.preset_update(), update_epochs=1)
    assert suite.section_label(1_000_000, variant) == "1M-e1-m4-clip0.2"
    assert suite.section_label(1_000_000, suite.preset_update()) == "1M"
    assert suite.record_path("hopper-v", "rtrl", 0, 1_000_000, variant).parent.name == "1M-e1-m4-clip0.2"
    _record(suite, "a.json", 0, 800.0, steps=1_000_000)
    folder = suite.RECORDS / "1M-e1-m4-clip0.2"
    folder.mkdir()
    (folder / "b.json").write_text(json.dumps({"task": "hopper-v", "core": "rtrl", "seed": 0, "total_steps": 1_000_000,
                                               "update": variant, "final_return": 55.0, "curve": [[0, 1.0]]}))
    assert [r["final_return"] for r in suite.load_records(1_000_000)] == [800.0]
    assert [r["final_return"] for r in suite.load_records(1_000_000, variant)] == [55.0]
    doc = tmp_path / "MUJOCO.md"
    suite.report(doc, 1_000_000)
    suite.report(doc, 1_000_000, variant)
    text = doc.read_text()
    preset_part = text[text.index("<!-- mujoco-table 1M -->"):text.index("<!-- /mujoco-table 1M -->")]
    variant_part = text[text.index("<!-- mujoco-table 1M-e1-m4-clip0.2 -->"):]
    assert "| 800 |" in preset_part and "55" not in preset_part
    assert "| 55 |" in variant_part and "800" not in variant_part and "with its update changed (e1-m4-clip0.2" in variant_part
    commands = []
    monkeypatch.setattr(suite, "check_child", lambda cmd, cwd=None: commands.append(cmd) or (_ for _ in ()).throw(
        RuntimeError("stop after the command")))
    with pytest.raises(RuntimeError):
        suite.run_one("hopper-v", "rtrl", 0, 1_000_000, tmp_path / "runs", variant)
    cmd = commands[0]
    assert cmd[cmd.index("--update-epochs") + 1] == "1" and "--minibatches" not in cmd
    assert cmd[cmd.index("--out") + 1].endswith("rtrl-seed0-1000000-e1-m4-clip0.2")


def test_a_separate_critic_is_a_variant_and_older_records_count_as_shared(suite, monkeypatch):
    """`--critic separate` is one more setting of the update: its records, directory and command are its own; a
    record made before ``critic`` was kept (no such key) is a shared critic's and stays in the preset's table."""
    variant = dict(suite.preset_update(), critic="separate")
    assert suite.preset_update()["critic"] == "shared"
    assert suite.section_label(1_000_000, variant) == "1M-e4-m4-clip0.2-critic-separate"
    older = {k: v for k, v in suite.preset_update().items() if k not in ("critic", "vtrace_lambda")}
    _record(suite, "old.json", 0, 321.0, steps=1_000_000, update=older)
    assert [r["final_return"] for r in suite.load_records(1_000_000)] == [321.0]
    assert suite.load_records(1_000_000, variant) == []
    commands = []
    monkeypatch.setattr(suite, "check_child", lambda cmd, cwd=None: commands.append(cmd) or (_ for _ in ()).throw(
        RuntimeError("stop after the command")))
    with pytest.raises(RuntimeError):
        suite.run_one("hopper-v", "rtrl", 0, 1_000_000, suite.ROOT / "runs", variant)
    cmd = commands[0]
    assert cmd[cmd.index("--critic") + 1] == "separate" and "--update-epochs" not in cmd
    assert cmd[cmd.index("--out") + 1].endswith("rtrl-seed0-1000000-e4-m4-clip0.2-critic-separate")
    both = dict(variant, vtrace_lambda=0.95)
    assert suite.section_label(1_000_000, both) == "1M-e4-m4-clip0.2-critic-separate-lambda0.95"
    assert suite.update_parts(both)[3:] == ["critic", "V-trace lambda"] and len(suite.update_parts(older)) == 3


def test_task_names_say_what_is_observed(suite):
    # Ni et al. 2022's names: "-p" observes the positions only (velocities masked), "-v" the velocities only
    for task, env_id in suite.TASKS.items():
        kept = {"p": "?observe=position", "v": "?observe=velocity"}.get(task.rpartition("-")[2], "")
        assert env_id.endswith(kept) and (kept or "?" not in env_id), (task, env_id)
