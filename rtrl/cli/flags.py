"""Flags from config dataclasses, one way for every command, and settings errors spelled as flags.

Each field made with ``rtrl.settings.setting`` becomes ``--field-name`` with its help text and its
default; its type (from the annotation) parses the value: ``bool`` fields take ``--flag`` alone
or ``--flag true|false``; ``X | None`` fields also take ``none``; ``list[X]`` fields take one or more
values. A flag the user did not give leaves no attribute on the namespace (``given`` returns only
those given), so that presets and config files sit between the defaults and the flags.
"""
from __future__ import annotations

import argparse
import types
import typing
from dataclasses import fields
from typing import Any

from rtrl.settings import SettingsMessage, default_of, from_dict, validate

__all__ = ["flag_name", "add_flags", "given", "config_from_flags", "parse_bool", "render_error"]


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def render_error(error: Exception) -> str:
    """A library error in the command line's terms: settings named as flags."""
    return error.render(flag_name) if isinstance(error, SettingsMessage) else str(error)


def parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _or_none(parse):
    def parse_optional(text: str):
        return None if text.lower() in ("none", "null") else parse(text)
    parse_optional.__name__ = getattr(parse, "__name__", "value")  # argparse names the type in its errors
    return parse_optional


def _unwrap(annotation) -> tuple[Any, bool, bool]:
    """(element type, may be None, is a list) of a field annotation such as ``int | None`` or ``list[int]``."""
    args = typing.get_args(annotation)
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        optional = type(None) in args
        (annotation,) = [a for a in args if a is not type(None)]
        args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (list, tuple):
        return args[0], optional, True
    return annotation, optional, False


def _shown(value) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value).replace("%", "%%")  # argparse %-formats help strings


def add_flags(parser: argparse.ArgumentParser, config_cls, default_note: str = "") -> None:
    """One flag per command-line field of ``config_cls``; the help ends with the default."""
    hints = typing.get_type_hints(config_cls)
    for f in fields(config_cls):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        kind, optional, is_list = _unwrap(hints[f.name])
        help_text = meta.get("help", "").replace("%", "%%")
        kwargs: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS,
                                      help=f"{help_text} (default: {_shown(default_of(f))}{default_note})")
        if kind is bool and not is_list:
            kwargs.update(type=parse_bool, metavar="BOOL", nargs="?", const=True)
        else:
            kwargs["type"] = _or_none(kind) if optional else kind
            if is_list:
                kwargs["nargs"] = "+"
        if meta.get("choices") is not None:
            kwargs["choices"] = list(meta["choices"]) + ([None] if optional else [])
            kwargs["metavar"] = "{" + ",".join(map(str, meta["choices"])) + "}"
        kwargs.update(meta.get("flag", {}))
        parser.add_argument(flag_name(f.name), **kwargs)


def given(args: argparse.Namespace, config_cls) -> dict:
    """The settings of ``config_cls`` that were given as flags, by field name."""
    return {f.name: getattr(args, f.name) for f in fields(config_cls) if hasattr(args, f.name)}


def config_from_flags(args: argparse.Namespace, config_cls, **settings):
    """The config of the flags given (the others at their defaults) and ``settings``, checked: how every
    command but `rtrl train` (which adds presets and files: ``runtime.config.resolve_config``) builds its
    config. A bad value raises ``SettingError``, which the command line prints as flags."""
    return validate(from_dict(config_cls, {**given(args, config_cls), **settings}))
