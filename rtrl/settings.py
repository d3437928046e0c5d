"""Documented settings: config dataclasses whose fields carry their help text and their check.

Every config of the library (``TrainConfig``, ``CopyTaskConfig``, ``EvalConfig``, the benchmarks')
is a dataclass built from :func:`setting` fields::

    @dataclass
    class MyConfig:
        hidden_size: int = setting(32, "units of the recurrent core", check=POSITIVE_INT)
        core: str = setting("rtrl-elstm", "recurrent core", choices=CORES)

``validate(config)`` checks every field and raises :class:`SettingError`, which names the setting,
its value and what is accepted. The library speaks of settings (``hidden_size=0``); the command
line, which generates one flag per field (``rtrl.cli.flags``), renders the same error with the flag
(``--hidden-size=0``). ``load_settings_file`` reads a TOML, YAML or JSON file of settings.
"""
from __future__ import annotations

import json
import math
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

__all__ = ["Check", "SettingError", "setting", "validate", "from_dict", "load_settings_file", "default_of",
           "literal",
           "POSITIVE_INT", "NON_NEGATIVE_INT", "POSITIVE", "NON_NEGATIVE", "UNIT_INTERVAL", "optional"]


class SettingError(ValueError):
    """A bad setting. ``template`` names settings as ``{name}`` (rendered ``name=value``, or the bare name
    when the value is True) or ``{name:name}`` (the name alone); ``values`` gives their values.

    ``str(error)`` spells settings as the library does; ``error.render(spell)`` with another speller
    (the CLI's ``--flag-name``) gives the same message in the caller's terms.
    """

    def __init__(self, template: str, **values: Any):
        self.template = template
        self.values = values
        super().__init__(self.render())

    def render(self, spell: Callable[[str], str] = lambda name: name) -> str:
        return self.template.format(**{name: _Spelled(spell(name), value) for name, value in self.values.items()})


def literal(text: str) -> str:
    """``text`` for a SettingError template: its braces are not placeholders."""
    return str(text).replace("{", "{{").replace("}", "}}")


class _Spelled:
    def __init__(self, name: str, value: Any):
        self.name, self.value = name, value

    def __format__(self, spec: str) -> str:
        if spec == "name" or self.value is True:
            return self.name
        return f"{self.name}={self.value!r}"


@dataclass(frozen=True)
class Check:
    """What a setting accepts: a phrase for the error message and the test itself."""

    accepted: str
    test: Callable[[Any], bool]

    def __call__(self, value: Any) -> bool:
        try:
            return bool(self.test(value))
        except TypeError:  # a value of the wrong type (a string where a number belongs, say)
            return False


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


POSITIVE_INT = Check("a positive integer", lambda v: _is_int(v) and v >= 1)
NON_NEGATIVE_INT = Check("0 or a positive integer", lambda v: _is_int(v) and v >= 0)
POSITIVE = Check("a positive finite number", lambda v: _is_number(v) and v > 0)
NON_NEGATIVE = Check("a finite number >= 0", lambda v: _is_number(v) and v >= 0)
UNIT_INTERVAL = Check("a number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1)
FINITE = Check("a finite number", _is_number)


def optional(check: Check) -> Check:
    """``check``, or None."""
    return Check(f"{check.accepted}, or none", lambda v: v is None or check(v))


def setting(default: Any, help: str, *, check: Check | None = None, choices: tuple | None = None,
            flag: dict | None = None, cli: bool = True):
    """A dataclass field with its help text, its check or choices, and argparse extras for its flag.

    ``flag`` holds extra ``add_argument`` keywords (``metavar``, ``nargs``...); ``cli=False`` keeps
    the setting out of the command line (it can still come from a config file).
    """
    metadata = {"help": help, "check": check, "choices": choices, "flag": flag or {}, "cli": cli}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def validate(config):
    """Check every field of a config dataclass, then its ``check_together()`` (cross-field rules)."""
    for f in fields(config):
        value = getattr(config, f.name)
        choices, check = f.metadata.get("choices"), f.metadata.get("check")
        if choices is not None and value not in choices:
            raise SettingError(f"bad {{{f.name}}}; accepted: {literal(', '.join(map(str, choices)))}", **{f.name: value})
        if check is not None and not check(value):
            raise SettingError(f"bad {{{f.name}}}; accepted: {check.accepted}", **{f.name: value})
    together = getattr(config, "check_together", None)
    if together is not None:
        together()
    return config


def default_of(f) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def from_dict(cls, data: dict):
    """``cls(**data)`` that names unknown keys and the accepted ones instead of a TypeError."""
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SettingError(literal(f"unknown settings {unknown}; accepted: {', '.join(sorted(known))}"))
    return cls(**data)


def load_settings_file(path: str | Path) -> dict:
    """A table of settings from a .toml, .yaml/.yml or .json file; keys may use '-' or '_'."""
    path = Path(path)
    if not path.is_file():
        raise SettingError(literal(f"config file {str(path)!r} does not exist or is not a file"))
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml
            data = yaml.safe_load(text) or {}
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise SettingError(literal(f"config file {str(path)!r}: unknown format {path.suffix!r}; "
                                       "accepted: .toml, .yaml, .yml, .json"))
    except SettingError:
        raise
    except Exception as error:  # each parser has its own error type; all mean "not valid syntax"
        raise SettingError(literal(f"config file {str(path)!r} is not valid {path.suffix[1:].upper()}: {error}")) from None
    if not isinstance(data, dict):
        raise SettingError(literal(f"config file {str(path)!r} must hold a table of settings, "
                                   f"got {type(data).__name__}"))
    return {str(k).replace("-", "_"): v for k, v in data.items()}
