"""bench/delay_probe.py: the supervised K-step recall probe of docs/MEMORY_SUITE.md."""
import pytest

from conftest import load_bench_script


@pytest.fixture(scope="module")
def delay_probe():
    return load_bench_script("delay_probe")


def test_an_lstm_learns_a_one_step_delay_and_the_probe_reports_when(delay_probe):
    reached, trace = delay_probe.probe("lstm (torch.nn.LSTM)", delay=1, iterations=250, hidden=16, length=12)
    assert reached is not None and reached <= 250 and trace[-1] == (250, 1.0)


def test_a_delay_as_long_as_the_sequence_is_refused(delay_probe):
    with pytest.raises(ValueError, match="delay 30 must be shorter than the sequence length 12"):
        delay_probe.probe("elstm (paper init)", delay=30, iterations=1, length=12)


def test_bad_arguments_are_named(delay_probe, capsys):
    with pytest.raises(SystemExit):
        delay_probe.main(["--delay", "0"])
    assert "--delay and --iterations must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        delay_probe.main(["--cores", "elstm,gru"])
    assert "--cores gru names no core; accepted: the start of one of elstm (memory-suite init)" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["indrnn (relu)", "indrnn (tanh)", "diagonal lru (real) + relu layer"])
def test_every_element_wise_cell_trains_in_the_probe(delay_probe, name):
    reached, trace = delay_probe.probe(name, delay=1, iterations=250, hidden=16, length=12)
    assert trace[-1][1] > trace[0][1] + 0.2   # from chance (1/4) towards the delayed symbol


def test_the_chosen_cores_are_the_ones_run(delay_probe, capsys):
    assert delay_probe.main(["--cores", "indrnn (tanh)", "--iterations", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| indrnn")]
    assert len(rows) == 1 and rows[0].startswith("| indrnn (tanh) |")
