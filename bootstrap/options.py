"""Service adapter options: each adapter declares them once, and one place checks them.

An adapter lists its options as an ``OptionSet`` of ``Option`` (name, default, kind, and the
other options' values it applies under). ``ServicePort.__init__`` checks what the user gave
(``options:`` in the config file, ``--set``) against that set: every unknown option, every
value of the wrong type or out of range, every option given where it does not apply, and every
missing required one becomes one problem line, and all of them are raised as ONE ``UsageError``
(exit 2) naming the option and what it accepts. A bad option never gets as far as a
``ValueError`` or ``AttributeError`` deep in an adapter (exit 1, "a bug").

Each kind also names values it refuses (``Kind.refused``: at least one of the wrong type and
one out of range), so the bad-input corpus is generated from the declarations: a new option
brings its own bad cases, and an option without them fails a test.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bootstrap.model import MAX_MEMBER_ID

WRONG_TYPE = "wrong-type"
OUT_OF_RANGE = "out-of-range"


class Refusals(ValueError):
    """Several problems with one option's value (each key of a mapping), reported together."""

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages = list(messages)
        super().__init__("; ".join(self.messages))


class Kind:
    """What an option accepts. ``check`` returns the value to use or raises ``ValueError``
    whose text says what would be accepted."""

    accepts = "a value"

    def check(self, value: Any) -> Any:
        return value

    def refused(self) -> Sequence[tuple[str, Any]]:
        """Values this kind refuses, each labelled ``WRONG_TYPE`` or ``OUT_OF_RANGE``."""
        return ()

    def fail(self, value: Any) -> ValueError:
        return ValueError(f"{_short(value)} is not {self.accepts}")


@dataclass(frozen=True)
class Int(Kind):
    """A whole number in ``low..high`` (YAML ints; a bool is not a number)."""

    low: int = 1
    high: int = 2**31 - 1

    @property
    def accepts(self) -> str:  # type: ignore[override]
        return f"a whole number in {self.low}..{self.high}"

    def check(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(value)
        if not self.low <= value <= self.high:
            raise self.fail(value)
        return value

    def refused(self) -> Sequence[tuple[str, Any]]:
        return ((WRONG_TYPE, "ten"), (WRONG_TYPE, True), (OUT_OF_RANGE, self.low - 1))


@dataclass(frozen=True)
class FileMode(Kind):
    """A file mode up to 0777: a YAML int (``0o644``, or 420) or an octal string (``"0644"``)."""

    accepts = "a file mode up to 0777, like 0644 or 0o644"

    def check(self, value: Any) -> int:
        if isinstance(value, str):
            digits = value.removeprefix("0o")
            if not digits or not re.fullmatch(r"[0-7]+", digits):
                raise self.fail(value)
            value = int(digits, 8)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
            raise self.fail(value)
        return value

    def refused(self) -> Sequence[tuple[str, Any]]:
        return ((WRONG_TYPE, [6, 4, 4]), (OUT_OF_RANGE, "0899"), (OUT_OF_RANGE, 0o1000))


@dataclass(frozen=True)
class Bool(Kind):
    accepts = "true or false"

    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(value)
        return value

    def refused(self) -> Sequence[tuple[str, Any]]:
        return ((WRONG_TYPE, "maybe"), (OUT_OF_RANGE, 2))


@dataclass(frozen=True)
class Text(Kind):
    """One line of text matching ``pattern`` (fullmatch), described by ``what``."""

    pattern: str = r"[^\x00-\x1f\x7f]+"
    what: str = "one printable line"
    too_far: str = "a\nb"  # an out-of-range example the pattern refuses

    @property
    def accepts(self) -> str:  # type: ignore[override]
        return self.what

    def check(self, value: Any) -> str:
        if not isinstance(value, str) or not re.fullmatch(self.pattern, value):
            raise self.fail(value)
        return value

    def refused(self) -> Sequence[tuple[str, Any]]:
        return ((WRONG_TYPE, {"a": 1}), (WRONG_TYPE, 7), (OUT_OF_RANGE, self.too_far))


NAME = Text(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", "a name (letters, digits, '_', '.', '-')", "a/b")
PATH = Text(r"[^\x00-\x1f\x7f]{1,4096}", "a path (one printable line)", "/etc/x\nserver.9=y")


@dataclass(frozen=True)
class Choice(Kind):
    """One of ``choices``; ``aliases`` map other spellings (``"4.4"``) to a choice."""

    choices: tuple[Any, ...]
    aliases: Mapping[Any, Any] = field(default_factory=dict)

    @property
    def accepts(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(repr(c) for c in self.choices)

    def check(self, value: Any) -> Any:
        if isinstance(value, (dict, list, bool)) or value is None:
            raise self.fail(value)
        for choice in self.choices:
            if value == choice or str(value) == str(choice):
                return choice
        for alias, choice in self.aliases.items():
            if str(value) == str(alias):
                return choice
        raise self.fail(value)

    def refused(self) -> Sequence[tuple[str, Any]]:
        return ((WRONG_TYPE, ["x"]), (OUT_OF_RANGE, "nonsense"))


@dataclass(frozen=True)
class Custom(Kind):
    """A kind with its own converter (it raises ``ValueError`` naming what it accepts)."""

    convert: Callable[[Any], Any]
    bad: tuple[tuple[str, Any], ...]
    what: str = "a value"

    @property
    def accepts(self) -> str:  # type: ignore[override]
        return self.what

    def check(self, value: Any) -> Any:
        return self.convert(value)

    def refused(self) -> Sequence[tuple[str, Any]]:
        return self.bad


@dataclass(frozen=True)
class Option:
    """One option: its default, its kind, and (``when``) the other options' values it needs.

    ``default=None`` means unset; ``required`` options must be given wherever they apply.
    """

    name: str
    default: Any
    kind: Kind
    when: Mapping[str, Any] = field(default_factory=dict)
    required: bool = False


class OptionSet:
    """The options of one adapter, checked in one place."""

    def __init__(self, service: str, *options: Option) -> None:
        self.service = service
        self.options = {option.name: option for option in options}

    def __iter__(self) -> Any:
        return iter(self.options.values())

    def check(self, given: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
        """Every option's value (given, else default); each problem is appended to
        ``problems``. A refused value falls back to the default so later checks can run."""
        known = ", ".join(self.options)
        for key in given:
            if key not in self.options:
                problems.append(
                    f"options: unknown {self.service} option {str(key)!r} (known: {known})"
                )
        values: dict[str, Any] = {}
        for option in self.options.values():  # in order: a ``when`` names earlier options
            values[option.name] = option.default
            # null unsets an option whose default is unset; elsewhere it is a wrong value
            if option.name in given and (
                given[option.name] is not None or option.default is not None
            ):
                try:
                    values[option.name] = option.kind.check(given[option.name])
                except Refusals as exc:
                    problems.extend(f"options.{option.name}: {m}" for m in exc.messages)
                except ValueError as exc:
                    problems.append(f"options.{option.name}: {exc}")
        for option in self.options.values():
            applies = all(
                values.get(key) == self._expected(key, wanted)
                for key, wanted in option.when.items()
            )
            if option.name in given and not applies:
                needs = ", ".join(f"{k}={v}" for k, v in option.when.items())
                problems.append(f"options.{option.name}: only used with {needs}")
            elif applies and option.required and values[option.name] is None:
                problems.append(f"options.{option.name}: missing ({option.kind.accepts})")
        return values

    def _expected(self, key: str, wanted: Any) -> Any:
        try:
            return self.options[key].kind.check(wanted)
        except ValueError:  # a declaration error, found by the unit tests
            return wanted


def id_range_options(default: tuple[int, int] | None = None) -> tuple[Option, Option]:
    """``id_min``/``id_max``: the member ids this cluster uses (``None``: the adapter's range)."""
    kind = Int(0, MAX_MEMBER_ID)
    low, high = default if default is not None else (None, None)
    return Option("id_min", low, kind), Option("id_max", high, kind)


def id_range(
    values: Mapping[str, Any], default: tuple[int, int], problems: list[str]
) -> tuple[int, int]:
    """``default`` with ``id_min``/``id_max`` applied; an empty range goes to ``problems``."""
    low = default[0] if values.get("id_min") is None else values["id_min"]
    high = default[1] if values.get("id_max") is None else values["id_max"]
    if low > high:
        problems.append(f"options.id_min/id_max: the id range {low}..{high} is empty")
    return low, high


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
