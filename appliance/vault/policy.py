"""The retention policy (policy/retention.toml): every class of data, why it is kept and for how long.

The policy ships with the software and is not owner-editable; the store configuration may only
choose a retention inside each class's bounds (`RetentionPolicy.choose`). The vault's schema, the
retention engine and the auditor's report all read this one declaration.
"""

from __future__ import annotations

import bisect
import calendar
import dataclasses
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

Unit = Literal["h", "d", "y"]
KeyPeriod = Literal["day", "month"]
Storage = Literal["period", "audit", "keyring", "none"]

_UNIT_NAMES = {"h": "hour", "d": "day", "y": "year"}
_UNIT_SECONDS = {"h": 3600.0, "d": 86400.0, "y": 365.2425 * 86400.0}
_SETTING_UNITS = {"_hours": "h", "_days": "d", "_years": "y"}
_DURATION = re.compile(r"([1-9][0-9]{0,4})([hdy])")


class PolicyError(ValueError):
    """A policy file, or a retention choice, that breaks the rules; `issues` lists every problem."""

    def __init__(self, issues: list[str], source: str = "") -> None:
        self.issues = issues
        head = f"{source}: " if source else ""
        super().__init__(head + f"{len(issues)} problem(s):\n" + "\n".join(f"  {i}" for i in issues))


@dataclass(frozen=True, slots=True, order=True)
class Duration:
    """A retention period: hours and days are exact seconds, years are calendar years in UTC.

    Calendar years keep a legal "5 years" exact across leap days; a record stored on 29 February
    expires on 1 March, the later of the two candidate days, so a legal minimum is never cut short.
    """

    amount: int
    unit: Unit

    def __post_init__(self) -> None:
        if self.unit not in _UNIT_NAMES:
            raise ValueError(f"duration unit must be h, d or y, got {self.unit!r}")
        if not (isinstance(self.amount, int) and self.amount > 0):
            raise ValueError(f"duration amount must be a positive whole number, got {self.amount!r}")

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Read "12h", "30d" or "5y"."""
        m = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
        if m is None:
            raise ValueError(f"expected a duration such as 12h, 30d or 5y, got {text!r}")
        return cls(int(m.group(1)), m.group(2))  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"

    def describe(self) -> str:
        """Words for people: "30 days"."""
        name = _UNIT_NAMES[self.unit]
        return f"{self.amount} {name}{'s' if self.amount != 1 else ''}"

    @property
    def nominal_s(self) -> float:
        """Approximate length in seconds, for comparing durations of different units."""
        return self.amount * _UNIT_SECONDS[self.unit]

    def after(self, t: float) -> float:
        """The moment this duration after `t` ends (when a record stored at `t` expires)."""
        if self.unit != "y":
            return t + self.amount * _UNIT_SECONDS[self.unit]
        whole = math.floor(t)
        start = datetime.fromtimestamp(whole, UTC)
        year = start.year + self.amount
        day = start.day
        month = start.month
        if month == 2 and day == 29 and not calendar.isleap(year):
            month, day = 3, 1
        end = start.replace(year=year, month=month, day=day)
        return end.timestamp() + (t - whole)

    def latest_expired(self, now: float) -> int:
        """The latest whole second `s` with `after(s) <= now`: rows stored at or before it are due."""
        if self.unit != "y":
            return math.floor(now - self.amount * _UNIT_SECONDS[self.unit])
        lo = math.floor(now - self.amount * 366 * 86400) - 86400
        hi = math.floor(now - self.amount * 365 * 86400) + 86400
        # after() is monotone, so the due rows are a prefix of time: find its end by bisection.
        n = bisect.bisect_right(range(lo, hi + 1), now, key=self.after)
        return lo + n - 1


def is_expired(stored_at: float, retention: Duration, now: float) -> bool:
    """Whether a record stored at `stored_at` is past its retention at `now` (and must be deleted)."""
    return retention.after(stored_at) <= now


@dataclass(frozen=True, slots=True)
class Column:
    """One declared column: its name and what it holds."""

    name: str
    description: str


@dataclass(frozen=True, slots=True)
class Table:
    """One declared table of a class, with every column it may have."""

    name: str
    description: str
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


@dataclass(frozen=True, slots=True)
class RecordClass:
    """One class of data the box handles: what it is for, its legal basis and its retention.

    `retention` is the chosen retention (the policy default until the configuration chooses),
    `minimum`/`maximum` the bounds an owner may choose within. Classes with `stored = False`
    (frames, tracks, pass strings) are declared so that the report can say so; they have no tables.
    """

    name: str
    title: str
    stored: bool
    personal: bool
    purpose: str
    legal_basis: str
    subjects: str
    ends: str
    storage: Storage
    retention: Duration | None = None
    minimum: Duration | None = None
    maximum: Duration | None = None
    setting: str = ""
    key_period: KeyPeriod | None = None
    tables: tuple[Table, ...] = ()

    def table(self, name: str) -> Table:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(f"class {self.name} declares no table {name!r}")


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """The whole policy: the classes of data, and the fields audit entries may carry."""

    version: int
    classes: tuple[RecordClass, ...]
    audit_fields: tuple[Column, ...]
    recipients: tuple[str, ...]
    source: str = ""

    @classmethod
    def load(cls, path: Path | None = None) -> RetentionPolicy:
        """Read and check a policy file; the shipped policy/retention.toml when `path` is None."""
        path = path or default_policy_path()
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise PolicyError([f"cannot read the policy: {err.strerror or err}"], str(path)) from err
        except tomllib.TOMLDecodeError as err:
            raise PolicyError([f"not valid TOML: {err}"], str(path)) from err
        return parse_policy(raw, str(path))

    def record_class(self, name: str) -> RecordClass:
        """The class called `name`; KeyError naming the known classes otherwise."""
        for c in self.classes:
            if c.name == name:
                return c
        raise KeyError(f"no class of data {name!r} in the policy (known: {', '.join(c.name for c in self.classes)})")

    def class_of_table(self, table: str) -> RecordClass:
        """The class whose declaration holds `table`."""
        for c in self.classes:
            if any(t.name == table for t in c.tables):
                return c
        raise KeyError(f"no class of data declares the table {table!r}")

    def retention(self, name: str) -> Duration:
        """The chosen retention of class `name` (classes without one raise KeyError)."""
        r = self.record_class(name).retention
        if r is None:
            raise KeyError(f"class {name!r} has no retention period")
        return r

    @property
    def settings(self) -> dict[str, RecordClass]:
        """Classes an owner may tune, by their store.toml field name under [vault]."""
        return {c.setting: c for c in self.classes if c.setting}

    def check_choices(self, choices: Mapping[str, int]) -> list[str]:
        """Every problem with a set of retention choices (field name -> whole units); [] if fine."""
        issues = []
        known = self.settings
        for key, value in choices.items():
            c = known.get(key)
            if c is None:
                issues.append(f"{key}: not a retention setting (known: {', '.join(sorted(known))})")
                continue
            unit = _setting_unit(key)
            assert c.minimum is not None and c.maximum is not None
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                issues.append(f"{key}: expected a positive whole number, got {value!r}")
                continue
            chosen = Duration(value, unit)
            if chosen.nominal_s < c.minimum.nominal_s - 1 or chosen.nominal_s > c.maximum.nominal_s + 1:
                issues.append(
                    f"{key}: {chosen.describe()} is outside the policy's bounds for {c.title.lower()} "
                    f"({c.minimum.describe()} to {c.maximum.describe()}); choose a value in that range"
                )
        return issues

    def choose(self, choices: Mapping[str, int]) -> RetentionPolicy:
        """This policy with the owner's retention choices; PolicyError if any is out of bounds."""
        issues = self.check_choices(choices)
        if issues:
            raise PolicyError(issues, "retention choices")
        classes = []
        for c in self.classes:
            if c.setting in choices:
                c = dataclasses.replace(c, retention=Duration(choices[c.setting], _setting_unit(c.setting)))
            classes.append(c)
        return dataclasses.replace(self, classes=tuple(classes))

    def choices(self) -> dict[str, int]:
        """The current retention of every tunable class, as store.toml [vault] values."""
        out = {}
        for key, c in self.settings.items():
            assert c.retention is not None
            out[key] = c.retention.amount
        return out


def default_policy_path() -> Path:
    """policy/retention.toml of this installation (shipped beside the package, never owner-edited)."""
    return Path(__file__).resolve().parents[2] / "policy" / "retention.toml"


def _setting_unit(key: str) -> Unit:
    for suffix, unit in _SETTING_UNITS.items():
        if key.endswith(suffix):
            return unit  # type: ignore[return-value]
    raise ValueError(f"retention setting {key!r} must end in _hours, _days or _years")


_CLASS_KEYS = {
    "title",
    "stored",
    "personal",
    "purpose",
    "legal_basis",
    "subjects",
    "ends",
    "storage",
    "retention",
    "min",
    "max",
    "setting",
    "key_period",
    "tables",
}
_NAME = re.compile(r"[a-z][a-z0-9_]{0,40}")


def parse_policy(raw: Any, source: str = "") -> RetentionPolicy:
    """Check parsed policy TOML and build the policy; PolicyError lists every problem."""
    issues: list[str] = []
    if not isinstance(raw, dict):
        raise PolicyError(["expected a table"], source)
    version = raw.get("version")
    if version != 1:
        issues.append(f"version: must be 1, got {version!r}")
    for key in raw:
        if key not in ("version", "classes", "audit", "recipients"):
            issues.append(f"{key}: unknown key")
    recipients = raw.get("recipients", [])
    if not (isinstance(recipients, list) and all(isinstance(r, str) for r in recipients)):
        issues.append("recipients: expected a list of strings")
        recipients = []
    classes = []
    raw_classes = raw.get("classes")
    if not isinstance(raw_classes, dict) or not raw_classes:
        issues.append("classes: expected at least one [classes.<name>] table")
        raw_classes = {}
    settings_seen: set[str] = set()
    tables_seen: set[str] = set()
    for name, body in raw_classes.items():
        c = _parse_class(name, body, issues)
        if c is None:
            continue
        if c.setting:
            if c.setting in settings_seen:
                issues.append(f"classes.{name}.setting: {c.setting!r} is used by another class too")
            settings_seen.add(c.setting)
        for t in c.tables:
            if t.name in tables_seen:
                issues.append(f"classes.{name}.tables.{t.name}: declared by two classes")
            tables_seen.add(t.name)
        classes.append(c)
    audit = raw.get("audit", {})
    fields: list[Column] = []
    if not isinstance(audit, dict) or not isinstance(audit.get("fields"), dict):
        issues.append("audit.fields: expected a table of field name = description")
    else:
        for fname, desc in audit["fields"].items():
            if not _NAME.fullmatch(fname) or not isinstance(desc, str) or not desc:
                issues.append(f"audit.fields.{fname}: needs a lower-case name and a description")
            else:
                fields.append(Column(fname, desc))
    if issues:
        raise PolicyError(issues, source)
    return RetentionPolicy(
        version=1, classes=tuple(classes), audit_fields=tuple(fields), recipients=tuple(recipients), source=source
    )


def _parse_class(name: str, body: Any, issues: list[str]) -> RecordClass | None:
    where = f"classes.{name}"
    if not _NAME.fullmatch(name) or not isinstance(body, dict):
        issues.append(f"{where}: expected a table with a lower-case name")
        return None
    for key in body:
        if key not in _CLASS_KEYS:
            issues.append(f"{where}.{key}: unknown key")
    text = {}
    for key in ("title", "purpose", "legal_basis", "subjects", "ends"):
        value = body.get(key)
        if not isinstance(value, str) or not value.strip():
            issues.append(f"{where}.{key}: required text")
            value = ""
        text[key] = value
    stored, personal = body.get("stored"), body.get("personal")
    if not isinstance(stored, bool) or not isinstance(personal, bool):
        issues.append(f"{where}: stored and personal must be true or false")
        return None
    storage = body.get("storage", "none")
    if storage not in ("period", "audit", "keyring", "none"):
        issues.append(f"{where}.storage: must be period, audit, keyring or none, got {storage!r}")
        return None
    durations: dict[str, Duration | None] = {}
    for key in ("retention", "min", "max"):
        value = body.get(key)
        if value is None:
            durations[key] = None
            continue
        try:
            durations[key] = Duration.parse(value)
        except ValueError as err:
            issues.append(f"{where}.{key}: {err}")
            durations[key] = None
    retention, lo, hi = durations["retention"], durations["min"], durations["max"]
    setting = body.get("setting", "")
    key_period = body.get("key_period")
    if storage == "none":
        if stored or body.get("tables"):
            issues.append(f"{where}: a class with storage = none must have stored = false and no tables")
    else:
        if not stored:
            issues.append(f"{where}: stored = false needs storage = none")
        if not body.get("tables"):
            issues.append(f"{where}.tables: a stored class must declare its tables")
    if storage == "period":
        if key_period not in ("day", "month"):
            issues.append(f"{where}.key_period: must be day or month for period storage, got {key_period!r}")
        if retention is None or lo is None or hi is None or not setting:
            issues.append(f"{where}: period storage needs retention, min, max and setting")
    elif key_period is not None:
        issues.append(f"{where}.key_period: only period storage has key periods")
    if (lo is None) != (hi is None) or (lo is not None and (retention is None or not setting)):
        issues.append(f"{where}: min and max go together, with a retention and a setting")
    if retention is not None and lo is not None and hi is not None:
        if not (lo.nominal_s <= retention.nominal_s <= hi.nominal_s):
            issues.append(f"{where}.retention: {retention} is outside its own bounds {lo} to {hi}")
        if setting:
            try:
                unit = _setting_unit(setting)
            except ValueError as err:
                issues.append(f"{where}.setting: {err}")
            else:
                if retention.unit != unit:
                    issues.append(f"{where}.setting: {setting!r} counts in {unit}, retention is {retention}")
    tables = []
    raw_tables = body.get("tables", {})
    if not isinstance(raw_tables, dict):
        issues.append(f"{where}.tables: expected tables")
        raw_tables = {}
    for tname, tbody in raw_tables.items():
        twhere = f"{where}.tables.{tname}"
        if not _NAME.fullmatch(tname) or not isinstance(tbody, dict):
            issues.append(f"{twhere}: expected a table with a lower-case name")
            continue
        desc = tbody.get("description")
        cols = tbody.get("columns")
        if not isinstance(desc, str) or not isinstance(cols, dict) or not cols:
            issues.append(f"{twhere}: needs a description and columns (name = what it holds)")
            continue
        columns = []
        for cname, cdesc in cols.items():
            if not _NAME.fullmatch(cname) or not isinstance(cdesc, str) or not cdesc.strip():
                issues.append(f"{twhere}.columns.{cname}: needs a lower-case name and a description")
            else:
                columns.append(Column(cname, cdesc))
        if storage == "period" and "stored_at" not in cols:
            issues.append(f"{twhere}: every table of period storage needs stored_at (retention counts from it)")
        tables.append(Table(tname, desc, tuple(columns)))
    return RecordClass(
        name=name,
        title=text["title"],
        stored=stored,
        personal=personal,
        purpose=text["purpose"],
        legal_basis=text["legal_basis"],
        subjects=text["subjects"],
        ends=text["ends"],
        storage=storage,
        retention=retention,
        minimum=lo,
        maximum=hi,
        setting=setting if isinstance(setting, str) else "",
        key_period=key_period,
        tables=tuple(tables),
    )
