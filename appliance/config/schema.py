"""A typed configuration schema built from dataclasses: defaults, bounds and help in one place.

Every section of store.toml is a frozen dataclass whose fields are declared with `setting()`.
`build()` turns parsed TOML into those dataclasses, collecting every problem with its key path
and the fix instead of stopping at the first, so an owner sees all mistakes at once. The owner
page's forms, the docs and the policy tables read the same field metadata.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, Union, get_args, get_origin

T = TypeVar("T")

_REQUIRED = object()


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration: where it is and what would fix it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(ValueError):
    """A configuration with one or more problems; `issues` lists all of them."""

    def __init__(self, issues: list[ConfigIssue], source: str = "") -> None:
        self.issues = issues
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(head + f"{len(issues)} problem(s):\n" + "\n".join(f"  {i}" for i in issues))


def setting(
    default: Any = _REQUIRED,
    help: str = "",
    *,
    min: float | None = None,
    max: float | None = None,
    choices: tuple[str, ...] | None = None,
    unit: str = "",
) -> Any:
    """Declare a configuration field with its default, one-line help, bounds and unit."""
    meta = {"help": help, "min": min, "max": max, "choices": choices, "unit": unit}
    if default is _REQUIRED:
        return dataclasses.field(metadata=meta)
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple or a factory for mutable defaults")
    return dataclasses.field(default=default, metadata=meta)


def section(cls: type[T], help: str = "") -> Any:
    """Declare a nested table whose fields all have defaults."""
    return dataclasses.field(default_factory=cls, metadata={"help": help, "section": True})


def many(help: str = "") -> Any:
    """Declare an array of tables (`[[name]]`), empty by default."""
    return dataclasses.field(default=(), metadata={"help": help})


def named(help: str = "") -> Any:
    """Declare a table of named tables (`[name.<id>]`), empty by default."""
    return dataclasses.field(default_factory=dict, metadata={"help": help})


@dataclass(frozen=True, slots=True)
class FieldDoc:
    """Documentation of one field, for check-config --explain, docs and forms."""

    path: str
    type: str
    default: str
    help: str
    unit: str
    bounds: str


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None)) + " (optional)"
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type_name(args[0])}"
        return f"[{', '.join(_type_name(a) for a in args)}]"
    if origin is dict:
        return f"table of {_type_name(get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "table"
    return getattr(tp, "__name__", str(tp))


def describe(cls: type, prefix: str = "") -> Iterator[FieldDoc]:
    """Every field of a schema class, depth first, with its documentation."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        path = f"{prefix}{f.name}"
        sub = _dataclass_inside(tp)
        meta = f.metadata
        if dataclasses.is_dataclass(tp):
            yield from describe(tp, path + ".")  # type: ignore[arg-type]
            continue
        if sub is not None:
            suffix = "[]" if get_origin(tp) is tuple else ".<id>"
            yield from describe(sub, path + suffix + ".")
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "required"
        bounds = []
        if meta.get("min") is not None:
            bounds.append(f">= {meta['min']}")
        if meta.get("max") is not None:
            bounds.append(f"<= {meta['max']}")
        if meta.get("choices"):
            bounds.append("one of " + ", ".join(meta["choices"]))
        yield FieldDoc(path, _type_name(tp), default, meta.get("help", ""), meta.get("unit", ""), "; ".join(bounds))


def _dataclass_inside(tp: Any) -> type | None:
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and dataclasses.is_dataclass(args[0]):
        return args[0]  # type: ignore[return-value]
    if origin is dict and dataclasses.is_dataclass(args[1]):
        return args[1]  # type: ignore[return-value]
    return None


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """A dataclass's resolved field types; resolving them is slow, and a store has hundreds of tables."""
    return typing.get_type_hints(cls)


class _Builder:
    def __init__(self) -> None:
        self.issues: list[ConfigIssue] = []

    def bad(self, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(path, message))

    def table(self, cls: type[T], raw: Any, path: str) -> T | None:
        where = path or "top level"
        if not isinstance(raw, dict):
            self.bad(where, f"expected a table, got {_show(raw)}")
            return None
        hints = _type_hints(cls)  # type: ignore[arg-type]
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for key in raw:
            if key not in fields:
                close = difflib.get_close_matches(str(key), list(fields), n=1)
                hint = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(fields)
                self.bad(_join(path, key), f"unknown key ({hint})")
        values: dict[str, Any] = {}
        ok = True
        for name, f in fields.items():
            fpath = _join(path, name)
            if name not in raw:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    self.bad(fpath, f"missing; add it ({f.metadata.get('help', 'required')})")
                    ok = False
                continue
            before = len(self.issues)
            value = self.value(hints[name], raw[name], fpath, f.metadata)
            if len(self.issues) > before:
                ok = False
            else:
                values[name] = value
        if not ok:
            return None
        try:
            return cls(**values)
        except ValueError as err:
            self.bad(where, str(err))
            return None

    def value(self, tp: Any, raw: Any, path: str, meta: Any) -> Any:
        origin = get_origin(tp)
        args = get_args(tp)
        if origin in (Union, types.UnionType):
            inner = [a for a in args if a is not type(None)]
            return self.value(inner[0], raw, path, meta)
        if dataclasses.is_dataclass(tp):
            return self.table(tp, raw, path)  # type: ignore[arg-type]
        if origin is dict:
            if not isinstance(raw, dict):
                self.bad(path, f"expected a table of named tables, got {_show(raw)}")
                return None
            return {k: self.value(args[1], v, f"{path}.{k}", meta) for k, v in raw.items()}
        if origin is tuple:
            if not isinstance(raw, list):
                self.bad(path, f"expected a list, got {_show(raw)}")
                return None
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(self.value(args[0], v, f"{path}[{i}]", meta) for i, v in enumerate(raw))
            if len(raw) != len(args):
                self.bad(path, f"expected a list of {len(args)} values, got {len(raw)}: {_show(raw)}")
                return None
            return tuple(self.value(a, v, f"{path}[{i}]", meta) for i, (a, v) in enumerate(zip(args, raw)))
        if tp is bool:
            if not isinstance(raw, bool):
                self.bad(path, f"expected true or false, got {_show(raw)}")
            return raw
        if tp is int:
            if isinstance(raw, bool) or not isinstance(raw, int):
                self.bad(path, f"expected a whole number, got {_show(raw)}")
                return None
            self._bounds(raw, path, meta)
            return raw
        if tp is float:
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
                self.bad(path, f"expected a finite number, got {_show(raw)}")
                return None
            self._bounds(raw, path, meta)
            return float(raw)
        if tp is str:
            if not isinstance(raw, str):
                self.bad(path, f"expected a string, got {_show(raw)}")
                return None
            choices = meta.get("choices") if meta else None
            if choices and raw not in choices:
                self.bad(path, f"{raw!r} is not allowed; use one of {', '.join(choices)}")
            return raw
        raise TypeError(f"unsupported schema type {tp!r} at {path}")

    def _bounds(self, v: float, path: str, meta: Any) -> None:
        lo, hi = (meta.get("min"), meta.get("max")) if meta else (None, None)
        unit = f" {meta.get('unit')}" if meta and meta.get("unit") else ""
        if lo is not None and v < lo:
            self.bad(path, f"{v}{unit} is below the minimum; use a value >= {lo}{unit}")
        if hi is not None and v > hi:
            self.bad(path, f"{v}{unit} is above the maximum; use a value <= {hi}{unit}")


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _show(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def build(cls: type[T], raw: Any) -> tuple[T | None, list[ConfigIssue]]:
    """Build a schema dataclass from parsed TOML, returning it (or None) and every issue found."""
    builder = _Builder()
    result = builder.table(cls, raw, "")
    return result, builder.issues
