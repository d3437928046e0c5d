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
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

__all__ = ["Check", "SettingError", "SettingsMessage", "setting", "validate", "from_dict", "load_settings_file",
           "default_of", "literal",
           "POSITIVE_INT", "NON_NEGATIVE_INT", "POSITIVE", "NON_NEGATIVE", "UNIT_INTERVAL", "FINITE", "SEED",
           "LEARNING_RATE", "is_finite_number",
           "optional"]


class SettingsMessage:
    """A message that names settings: ``template`` names them as ``{name}`` (rendered ``name=value``, or
    the bare name when the value is True), ``{name:shown}`` (``name=value`` whatever the value) or ``{name:name}``
    (the name alone); ``values`` gives their values.

    ``str(error)`` spells settings as the library does; ``error.render(spell)`` with another speller
    (the CLI's ``--flag-name``) gives the same message in the caller's terms. ``sources`` maps a setting to
    the file it was read from: such a setting keeps its own name, followed by "(in FILE)", whatever the speller
    (a setting from a config file is not a flag the user typed). Mixed into exceptions.
    """

    def __init__(self, template: str, **values: Any):
        self.template = template
        self.values = values
        self.sources: dict[str, str] = {}
        super().__init__(self.render())

    def render(self, spell: Callable[[str], str] = lambda name: name) -> str:
        return self.template.format(**{
            name: _Spelled(name, value, f" (in {self.sources[name]})") if name in self.sources
            else _Spelled(spell(name), value) for name, value in self.values.items()})


class SettingError(SettingsMessage, ValueError):
    """A bad setting (see :class:`SettingsMessage` for how it names settings)."""


def literal(text: str) -> str:
    """``text`` for a SettingError template: its braces are not placeholders."""
    return str(text).replace("{", "{{").replace("}", "}}")


class _Spelled:
    def __init__(self, name: str, value: Any, where: str = ""):
        self.name, self.value, self.where = name, value, where

    def __format__(self, spec: str) -> str:
        if spec == "name":
            return self.name
        if self.value is True and spec != "shown":
            return self.name + self.where
        return f"{self.name}={self.value!r}{self.where}"


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
SEED = Check("an integer from 0 to 2**32 - 1", lambda v: _is_int(v) and 0 <= v < 2 ** 32)
# a learning rate whose first update leaves float32 weights finite
LEARNING_RATE = Check("a positive finite number up to 1e30", lambda v: _is_number(v) and 0 < v <= 1e30)


def is_finite_number(value) -> bool:
    """An int or float (not a bool) that is finite: what a numeric range check starts from."""
    return _is_number(value)

# what a value of each annotated type looks like, for a value of the wrong type with no check of its own
_TYPE_PHRASES = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
                 dict: "a table of key = value"}


def _has_type(value, annotation) -> bool:
    """Whether ``value`` fits a field annotation: bool, int, float (ints too), str, dict, list[X], X | None."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, a) for a in args)
    if annotation is type(None):
        return value is None
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and all(_has_type(v, args[0]) for v in value)
    if annotation is float:
        return _is_int(value) or isinstance(value, float)
    if annotation is int:
        return _is_int(value)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True  # an annotation this check does not know (Any, a callable...): accept


def _type_phrase(annotation) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_type_phrase(a) for a in args) + ", or none"
    if typing.get_origin(annotation) in (list, tuple):
        return f"a list of {_type_phrase(args[0]).removeprefix('a ').removeprefix('an ')}s"
    return _TYPE_PHRASES.get(annotation, getattr(annotation, "__name__", str(annotation)))


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
    """Check every field of a config dataclass (its type, choices and check), then its ``check_together()``
    (cross-field rules). A value of the wrong type (a string in a YAML file where a number belongs, say)
    is named with what the field accepts."""
    hints = typing.get_type_hints(type(config))
    for f in fields(config):
        value = getattr(config, f.name)
        choices, check = f.metadata.get("choices"), f.metadata.get("check")
        if choices is not None and value not in choices and not (value is None and _has_type(None, hints[f.name])):
            raise SettingError(_bad(f.name, value) + f"; accepted: {literal(', '.join(map(str, choices)))}", **{f.name: value})
        if not _has_type(value, hints[f.name]):
            accepted = check.accepted if check is not None else _type_phrase(hints[f.name])
            raise SettingError(_bad(f.name, value) + f"; accepted: {literal(accepted)}", **{f.name: value})
        if check is not None and not check(value):
            raise SettingError(_bad(f.name, value) + f"; accepted: {literal(check.accepted)}", **{f.name: value})
    together = getattr(config, "check_together", None)
    if together is not None:
        together()
    return config


def _bad(name: str, value: Any) -> str:
    """``bad {name}=value`` with the value shown whatever it is (True too, which ``{name}`` would hide)."""
    return f"bad {{{name}:shown}}"


def default_of(f) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def from_dict(cls, data: dict):
    """``cls(**data)`` that names unknown keys and the accepted ones instead of a TypeError."""
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SettingError(literal(f"unknown settings {unknown}; accepted: {', '.join(sorted(known))}"))
    return cls(**data)


def _repeated(path: Path, key, first, second) -> SettingError:
    return SettingError(literal(f"config file {str(path)!r} sets {key!r} twice ({first} and {second}); "
                                "accepted: each setting once"))


def _table(pairs: list, path: Path) -> dict:
    """A JSON object of ``path`` as a dict; a key given twice is refused (json keeps the last one, silently)."""
    table: dict = {}
    for key, value in pairs:
        if key in table:
            raise _repeated(path, key, repr(table[key]), repr(value))
        table[key] = value
    return table


def _yaml_loader(path: Path):
    """PyYAML's SafeLoader refusing a mapping key given twice (it keeps the last one, silently); a merge key's
    entries (``<<: *base``) may still be overridden."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                lines: dict = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key, line = self.construct_object(key_node, deep=deep), key_node.start_mark.line + 1
                    try:
                        if key in lines:
                            raise _repeated(path, key, f"lines {lines[key]}", line)
                        lines[key] = line
                    except TypeError:   # an unhashable key: SafeLoader's own error names it
                        continue
            return super().construct_mapping(node, deep)

    return Loader


def load_settings_file(path: str | Path) -> dict:
    """A table of settings from a .toml, .yaml/.yml or .json file; keys may use '-' or '_'."""
    path = Path(path)
    if not path.is_file():
        raise SettingError(literal(f"config file {str(path)!r} does not exist or is not a file"))
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise SettingError(literal(f"config file {str(path)!r} cannot be read: {reason}")) from None
    try:
        if path.suffix == ".toml":
            import tomllib
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml
            data = yaml.load(text, Loader=_yaml_loader(path)) or {}   # SafeLoader's constructors
        elif path.suffix == ".json":
            data = json.loads(text, object_pairs_hook=lambda pairs: _table(pairs, path))
        else:
            raise SettingError(literal(f"config file {str(path)!r}: unknown format {path.suffix!r}; "
                                       "accepted: .toml, .yaml, .yml, .json"))
    except SettingError:
        raise
    except Exception as error:  # each parser has its own error type; all mean "not valid syntax"
        mark = getattr(error, "problem_mark", None)   # YAML's errors span lines; say where, in one
        reason = f"{error.problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else error
        raise SettingError(literal(f"config file {str(path)!r} is not valid {path.suffix[1:].upper()}: {reason}")) from None
    if not isinstance(data, dict):
        raise SettingError(literal(f"config file {str(path)!r} must hold a table of settings, "
                                   f"got {type(data).__name__}"))
    settings: dict = {}
    spelled: dict = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name in settings:
            raise SettingError(literal(f"config file {str(path)!r} sets {name} twice, as {spelled[name]!r} = "
                                       f"{settings[name]!r} and as {key!r} = {value!r}; accepted: one spelling "
                                       "of each setting"))
        settings[name], spelled[name] = value, key
    return settings
