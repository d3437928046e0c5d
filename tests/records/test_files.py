"""Files that a crash cannot leave half-written, the run directory's lock, and metrics.csv trimmed back to
a checkpoint (rows cut short by a kill included)."""
import csv
import os

import pytest

from rtrl.records.files import remove_stale_temporaries, write_atomically, write_text_atomically
from rtrl.records.lock import DirectoryLock, LockedError
from rtrl.records.metrics import MetricsLog, keep_rows_up_to


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "checkpoint.pt"
    write_text_atomically(path, "old")

    def half_then_fail(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, half_then_fail)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["checkpoint.pt"]
    write_text_atomically(path, "new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["checkpoint.pt"]


def test_stale_temporaries_of_known_files_are_removed(tmp_path):
    (tmp_path / "checkpoint.pt.tmp").write_text("half")
    (tmp_path / "notes.txt.tmp").write_text("the user's")
    removed = remove_stale_temporaries(tmp_path, ["checkpoint.pt", "config.json"])
    assert removed == [tmp_path / "checkpoint.pt.tmp"]
    assert sorted(os.listdir(tmp_path)) == ["notes.txt.tmp"]


def test_the_lock_names_its_holder_and_a_dead_holder_does_not_block(tmp_path):
    path = tmp_path / "run.lock"
    held = DirectoryLock(path).acquire()
    with pytest.raises(LockedError) as error:
        DirectoryLock(path).acquire()   # another open file description: flock refuses it, as for a second process
    assert error.value.holder["pid"] == str(os.getpid()) and "started" in error.value.holder
    held.release()
    assert not path.exists()
    path.write_text("pid 999999999\nstarted long ago\n")   # left by a killed run: no process holds its flock
    with DirectoryLock(path) as lock:
        assert path.read_text().startswith(f"pid {os.getpid()}\n") and lock.fd is not None
    assert not path.exists()


def write_rows(path, rows, columns=("step", "loss")):
    with MetricsLog(path, columns) as log:
        for row in rows:
            log.write(row)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_trimming_drops_rows_after_the_checkpoint_and_rows_cut_short(tmp_path):
    path = tmp_path / "metrics.csv"
    write_rows(path, [{"step": s, "loss": s / 10} for s in (10, 20, 30)])
    with open(path, "a", newline="") as f:
        f.write("40,4.0\r\n25\r\n4")   # a row with a missing cell, then a row the kill cut off mid-number
    keep_rows_up_to(path, ("step", "loss"), 30)
    assert [r["step"] for r in read_rows(path)] == ["10", "20", "30"]
    keep_rows_up_to(path, ("step", "loss"), 20)
    assert [r["step"] for r in read_rows(path)] == ["10", "20"]
    assert path.read_text().endswith("\n")


def test_trimming_gives_old_rows_the_new_columns(tmp_path):
    """A run directory of an earlier rtrl (fewer metric columns) resumes into a file with the current header."""
    path = tmp_path / "metrics.csv"
    write_rows(path, [{"step": 10, "loss": 1.0}])
    keep_rows_up_to(path, ("step", "loss", "nonfinite_updates"), 10)
    write_rows(path, [{"step": 20, "loss": 2.0, "nonfinite_updates": 1}], ("step", "loss", "nonfinite_updates"))
    assert read_rows(path) == [{"step": "10", "loss": "1.0", "nonfinite_updates": ""},
                               {"step": "20", "loss": "2.0", "nonfinite_updates": "1"}]


def test_a_metrics_write_error_names_the_file(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    (tmp_path / "metrics.csv").symlink_to("/dev/full")   # every write: ENOSPC, as on a full disk
    with pytest.raises(OSError) as error:
        MetricsLog(tmp_path / "metrics.csv", ("step",))
    assert error.value.filename == str(tmp_path / "metrics.csv") and error.value.errno == 28
