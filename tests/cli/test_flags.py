"""Flags generated from config dataclasses, and settings errors in the library's and the CLI's terms."""
import argparse
from dataclasses import dataclass

import pytest

from rtrl.cli import build_parser
from rtrl.cli.flags import add_flags, given, render_error
from rtrl.settings import (POSITIVE, POSITIVE_INT, SettingError, from_dict, load_settings_file, optional,
                           setting, validate)


@dataclass
class Example:
    hidden_size: int = setting(32, "units", check=POSITIVE_INT)
    lr: float | None = setting(None, "learning rate; none: the model's", check=optional(POSITIVE))
    core: str = setting("a", "which core", choices=("a", "b"))
    norm: bool = setting(False, "normalise")
    lengths: list[int] = setting([1, 2], "lengths")
    secret: dict = setting({}, "not a flag", cli=False)

    def check_together(self):
        if self.norm and self.core == "b":
            raise SettingError("{norm} does not go with {core}", norm=self.norm, core=self.core)


def parse(argv):
    parser = argparse.ArgumentParser()
    add_flags(parser, Example)
    return given(parser.parse_args(argv), Example)


def test_flags_parse_by_type_and_only_given_flags_are_returned():
    assert parse([]) == {}
    assert parse(["--hidden-size", "8", "--lr", "0.5", "--core", "b", "--lengths", "3", "4"]) == {
        "hidden_size": 8, "lr": 0.5, "core": "b", "lengths": [3, 4]}
    assert parse(["--norm"]) == {"norm": True} and parse(["--norm", "false"]) == {"norm": False}
    assert parse(["--lr", "none"]) == {"lr": None}
    for bad in (["--hidden-size", "x"], ["--core", "c"], ["--norm", "maybe"], ["--secret", "1"]):
        with pytest.raises(SystemExit):
            parse(bad)


def test_help_shows_each_settings_help_and_default(capsys):
    parser = argparse.ArgumentParser()
    add_flags(parser, Example)
    text = " ".join(parser.format_help().split())
    assert "--hidden-size HIDDEN_SIZE units (default: 32)" in text
    assert "--lengths LENGTHS [LENGTHS ...] lengths (default: 1 2)" in text and "--norm [BOOL]" in text
    assert "--core {a,b}" in text and "--secret" not in text


def test_errors_name_settings_in_the_library_and_flags_on_the_command_line():
    with pytest.raises(SettingError) as error:
        validate(Example(hidden_size=0))
    assert str(error.value) == "bad hidden_size=0; accepted: a positive integer"
    assert render_error(error.value) == "bad --hidden-size=0; accepted: a positive integer"
    with pytest.raises(SettingError) as error:
        validate(Example(norm=True, core="b"))
    assert str(error.value) == "norm does not go with core='b'"
    assert render_error(error.value) == "--norm does not go with --core='b'"
    with pytest.raises(SettingError, match="bad core='c'; accepted: a, b"):
        validate(Example(core="c"))
    with pytest.raises(SettingError, match=r"unknown settings \['hiden_size'\]; accepted: core, hidden_size"):
        from_dict(Example, {"hiden_size": 3})
    assert validate(Example(lr=None)).lr is None
    for bad in (float("inf"), float("nan"), -1.0, "0.1", True):
        with pytest.raises(SettingError):
            validate(Example(lr=bad))


@pytest.mark.parametrize("field, value, message", [
    ("hidden_size", "8", "bad hidden_size='8'; accepted: a positive integer"),       # a check speaks for the type
    ("hidden_size", 8.0, "bad hidden_size=8.0; accepted: a positive integer"),
    ("norm", "yes", "bad norm='yes'; accepted: true or false"),                       # no check: the type's phrase
    ("secret", 5, "bad secret=5; accepted: a table of key = value"),
    ("lengths", [1, "2"], "bad lengths=[1, '2']; accepted: a list of integers"),
    ("core", 5, "bad core=5; accepted: a, b"),                                         # choices come first
])
def test_a_value_of_the_wrong_type_is_named_with_what_is_accepted(field, value, message):
    """As a YAML or JSON file may give them: every field's annotation is checked, not only its check."""
    with pytest.raises(SettingError) as error:
        validate(Example(**{field: value}))
    assert str(error.value) == message


def test_right_types_pass_the_type_check():
    assert validate(Example(hidden_size=3, lr=1, norm=False, lengths=[], secret={"a": 1})).lr == 1   # an int is a float


def test_settings_files_in_three_formats_and_their_errors(tmp_path):
    (tmp_path / "a.toml").write_text('hidden-size = 8\nlr = 0.5\n')
    (tmp_path / "a.yaml").write_text("hidden_size: 8\nlr: 0.5\n")
    (tmp_path / "a.json").write_text('{"hidden_size": 8, "lr": 0.5}')
    for name in ("a.toml", "a.yaml", "a.json"):
        assert load_settings_file(tmp_path / name) == {"hidden_size": 8, "lr": 0.5}
    (tmp_path / "b.yaml").write_text("[1, 2]\n")
    (tmp_path / "c.toml").write_text("lr = = 1\n")
    (tmp_path / "d.ini").write_text("")
    for name, message in (("b.yaml", "must hold a table of settings, got list"), ("c.toml", "is not valid TOML"),
                          ("d.ini", "unknown format '.ini'"), ("nowhere.toml", "does not exist"),
                          (".", "is not a file")):
        with pytest.raises(SettingError, match=message):
            load_settings_file(tmp_path / name)


def test_every_command_registers_and_its_help_renders(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert set(commands) == {"train", "eval", "copy-task", "bench", "plot"}
    for name, sub in commands.items():
        assert "--help" in sub.format_help() and sub.description, name
