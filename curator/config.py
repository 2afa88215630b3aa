"""Settings from flags, the environment and a TOML file, the same way for every process.

Highest precedence first: command-line flags, the environment (a prefix such as
``CURATOR_SERVER_``, nested fields joined with ``__``), a TOML file (a flag, or an environment
variable naming it), then the defaults. The server (:mod:`server.settings`) and the edge
selector (:mod:`edge_selector.settings`) each declare a ``pydantic_settings.BaseSettings`` class
and load it with :func:`load_layered`; their CLIs declare :class:`SettingFlag` s and read them
back with :func:`flag_overrides`. The environment is passed in as a mapping, so nothing below
the process edge reads ``os.environ``.

``pydantic-settings`` (extras ``edge`` and ``server``) is imported when settings are loaded,
never at ``import curator``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from curator._optional import require
from curator.errors import InvalidInputError

__all__ = ["SettingFlag", "add_setting_flags", "flag_overrides", "load_layered", "one_line"]

_S = TypeVar("_S", bound=BaseModel)


@dataclass(frozen=True)
class SettingFlag:
    """A command-line flag that sets one (possibly nested) settings field.

    Attributes:
        flag: e.g. ``"--max-buffer-mb"``.
        path: the field's key path, e.g. ``("max_buffer_mb",)`` or ``("snowflake", "port")``.
        help: one line for ``--help``. The value's type is checked by the settings model, not
            by argparse, so a bad value gets the same message from a flag, a variable or a file.
    """

    flag: str
    path: tuple[str, ...]
    help: str

    @property
    def dest(self) -> str:
        return "setting_" + self.flag.lstrip("-").replace("-", "_")


def add_setting_flags(
    parser: argparse.ArgumentParser,
    flags: Sequence[SettingFlag],
    *,
    only: Sequence[str] | None = None,
    config_help: str,
) -> None:
    """Add ``--config FILE`` and the ``flags`` (those named in ``only``, or all) to ``parser``."""
    parser.add_argument("--config", type=Path, metavar="FILE", help=config_help)
    for f in flags:
        if only is None or f.flag in only:
            parser.add_argument(f.flag, dest=f.dest, default=None, metavar="VALUE", help=f.help)


def flag_overrides(args: argparse.Namespace, flags: Sequence[SettingFlag]) -> dict[str, Any]:
    """The settings given as flags, as a nested dict of field values (absent flags left out)."""
    out: dict[str, Any] = {}
    for f in flags:
        value = getattr(args, f.dest, None)
        if value is None:
            continue
        target = out
        for key in f.path[:-1]:
            target = target.setdefault(key, {})
        target[f.path[-1]] = value
    return out


def load_layered(
    settings_cls: type[_S],
    cli_overrides: Mapping[str, Any],
    config_path: Path | None,
    env: Mapping[str, str] | None,
    *,
    config_env_var: str,
) -> _S:
    """Build ``settings_cls``: ``cli_overrides`` > ``env`` > the TOML file > defaults.

    Args:
        settings_cls: a ``pydantic_settings.BaseSettings`` subclass with its ``env_prefix``.
        cli_overrides: field values from flags; ``None`` values are ignored (a flag not given).
        config_path: the TOML file; when None, ``env[config_env_var]`` names it (if set).
        env: the environment; ``None`` means ``os.environ`` (only at the process edge).
        config_env_var: the variable naming the TOML file.

    Returns:
        A validated ``settings_cls`` instance.

    Raises:
        InvalidInputError: a bad value, an unknown key, or an unreadable config file; one line
            naming the field.
    """
    ps = require("pydantic_settings", extra="edge")
    environ: Mapping[str, str] = os.environ if env is None else env
    if config_path is None and environ.get(config_env_var):
        config_path = Path(environ[config_env_var])
    if config_path is not None and not Path(config_path).is_file():
        raise InvalidInputError(f"config file {str(config_path)!r} does not exist")
    overrides = _drop_none(dict(cli_overrides))

    class _MappingEnvSource(ps.EnvSettingsSource):  # type: ignore[misc,name-defined]
        """The environment source, reading ``environ`` instead of ``os.environ``."""

        def _load_env_vars(self) -> Mapping[str, str | None]:
            return {
                (key if self.case_sensitive else key.lower()): value
                for key, value in environ.items()
                if not (self.env_ignore_empty and value == "")
            }

    class _Loaded(settings_cls):  # type: ignore[misc,valid-type]
        @classmethod
        def settings_customise_sources(
            cls, settings_cls: Any, *_: Any, **__: Any
        ) -> tuple[Any, ...]:
            sources: list[Any] = [
                ps.InitSettingsSource(settings_cls, init_kwargs=overrides),
                _MappingEnvSource(settings_cls),
            ]
            if config_path is not None:
                sources.append(ps.TomlConfigSettingsSource(settings_cls, toml_file=config_path))
            return tuple(sources)

    try:
        loaded = _Loaded()
    except ValidationError as exc:
        raise InvalidInputError(one_line(exc)) from None
    except (OSError, ValueError) as exc:  # an unreadable or malformed TOML file
        raise InvalidInputError(f"cannot read config file {str(config_path)!r}: {exc}") from None
    values = {name: getattr(loaded, name) for name in settings_cls.model_fields}
    return settings_cls.model_construct(loaded.model_fields_set, **values)  # validated above


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            value = _drop_none(value)
            if not value:
                continue
        if value is not None:
            out[key] = value
    return out


def one_line(exc: ValidationError) -> str:
    """A settings validation error as one line naming each bad field (secrets not shown)."""
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "settings"
        given = error.get("input")
        hidden = any(word in field for word in ("password", "token"))
        shown = "" if hidden or isinstance(given, dict) else f" (got {given!r})"
        parts.append(f"setting {field!r}: {error['msg']}{shown}")
    return "invalid settings: " + "; ".join(parts)
