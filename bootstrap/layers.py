"""The layers settings are read from, and the converters that check one value each.

Every layer (YAML file, environment, flags) is read into the same flat keys, each value a
``Raw`` that remembers where it came from, so a problem names its origin (``--expect``,
``CLUSTER_BOOTSTRAP_EXPECT``, ``conf.yaml: expect``). ``Problems`` collects them; the loaders
raise them together as one ``UsageError``. Converters raise ``ValueError`` saying what is wrong.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bootstrap.errors import UntrustedValue
from bootstrap.model import is_name

MAX_CONFIG_BYTES = 1024 * 1024
T = TypeVar("T")
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


@dataclass(frozen=True)
class Flags:
    """The command-line layer: ``None`` (or empty) means "not given"."""

    config: str | None = None
    values: Mapping[str, Any] = field(default_factory=dict)  # own keys, e.g. {"expect": "3"}
    ports: Sequence[str] = ()  # "label=port"
    options: Sequence[str] = ()  # "key=value" (value read as YAML)
    consul: Mapping[str, Any] = field(default_factory=dict)  # consul keys as in CONSUL_ENV
    debug: bool = False


@dataclass(frozen=True)
class Raw:
    value: Any
    origin: str


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, raw: Raw, message: str) -> None:
        self.items.append(f"{raw.origin}: {message}")

    def convert(self, raw: Raw | None, convert: Callable[[Any], T], default: T = None) -> T:  # type: ignore[assignment]
        """``raw`` converted, or ``default`` when it is absent or refused (then noted)."""
        if raw is None:
            return default
        try:
            return convert(raw.value)
        except (ValueError, TypeError, UntrustedValue) as exc:
            self.add(raw, str(exc))
            return default


def read_yaml(path: str | None, problems: Problems) -> dict[str, Raw]:
    if not path:
        return {}
    try:
        size = Path(path).stat().st_size
        if size > MAX_CONFIG_BYTES:
            problems.items.append(
                f"--config {path}: {size} bytes; a settings file is at most 1 MiB"
            )
            return {}
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.items.append(f"--config {path}: cannot read: {getattr(exc, 'strerror', exc)}")
        return {}
    import yaml  # only with --config: a start without a file does not pay for it

    try:
        data = yaml.load(text, Loader=settings_loader())  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problems.items.append(f"--config {path}: not valid YAML{line}")
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.items.append(f"--config {path}: must be a mapping of settings at the top")
        return {}
    layer: dict[str, Raw] = {}
    for key, value in data.items():
        origin = f"{path}: {key}"
        if key in ("consul", "ports", "options") and not isinstance(value, dict):
            problems.items.append(f"{origin}: must be a mapping")
            continue
        layer[str(key)] = Raw(value, origin)
    return layer


@functools.cache
def settings_loader() -> Any:
    """yaml's SafeLoader without aliases: settings never need them, a billion laughs does."""
    import yaml

    class SettingsLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(None, None, "aliases are not allowed", mark)
            return super().compose_node(parent, index)

    return SettingsLoader


def as_text(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)) or value is None:
        raise ValueError(f"{value!r} is not a single value")
    return str(value)


def as_path(value: Any) -> str:
    text = as_text(value)
    if not text or not text.isprintable():
        raise ValueError(f"{text!r} is not a printable path")
    return text


def as_token(value: Any) -> str:
    text = as_text(value)
    if not text.isprintable():
        raise ValueError("the token is not one printable line (value not shown)")
    return text


def as_name(value: Any) -> str:
    text = as_text(value)
    if not is_name(text):
        raise ValueError(f"{text!r} is not a name (letters, digits, '_', '.', '-')")
    return text


def as_member_name(value: Any) -> str:
    text = as_text(value)
    if not text or len(text) > 512 or not text.isprintable():
        raise ValueError(f"{text!r} is not a printable name")
    return text


def as_kv_prefix(value: Any) -> str:
    text = as_text(value).strip("/")
    if not all(is_name(part) for part in text.split("/")):
        raise ValueError(f"{text!r} is not a KV path of names")
    return text


def as_positive_int(value: Any) -> int:
    if isinstance(value, bool) or not str(value).strip().isdigit() or int(value) < 1:
        raise ValueError(f"{value!r} is not a whole number >= 1")
    return int(value)


def as_count0(value: Any) -> int:
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise ValueError(f"{value!r} is not a whole number >= 0")
    return int(value)


def as_positive_float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number of seconds") from None
    if not 0 < number < 10**7:
        raise ValueError(f"{value!r} is not a positive number of seconds")
    return number


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = as_text(value)
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{text!r} is not true or false")


def as_tags(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else as_text(value).split(",")
    tags = tuple(str(item).strip() for item in items if str(item).strip())
    for tag in tags:
        if not tag.isprintable():
            raise ValueError(f"tag {tag!r} is not printable")
    return tags


def as_meta(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        pairs = [(str(k), str(v)) for k, v in value.items()]
    else:
        pairs = [item.partition("=")[::2] for item in as_text(value).split(",") if item.strip()]
    for key, val in pairs:
        if not key.strip() or not (key + val).isprintable():
            raise ValueError(f"{key}={val!r} is not a printable key=value")
    return {key.strip(): val.strip() for key, val in pairs}


def as_yaml_scalar(value: str) -> Any:
    import yaml  # only with --set

    try:
        return yaml.safe_load(value) if value else ""
    except yaml.YAMLError:
        raise ValueError(f"{value!r} is not a YAML value") from None
