"""Checks a decoded JSON value against a botocore shape, as AWS's request validation does.

botocore's `ParamValidator` checks types and required members but not lengths, ranges, enums or
patterns; AWS services reject those with a ValidationException. The fakes run both. Patterns are
matched whole (``re.fullmatch``), as AWS's Java-based validation does (``Matcher.matches``).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from botocore.model import Shape


@functools.cache
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def wire_errors(value: Any, shape: Shape, path: str = "") -> list[str]:
    """Everything about the decoded JSON ``value`` that breaks ``shape`` on the JSON wire."""
    where, t, meta = path or shape.name, shape.type_name, shape.metadata
    bad = f"Value {value!r:.60} at '{where}' failed to satisfy constraint: Member must"
    if t == "structure":
        if not isinstance(value, dict):
            return [f"{bad} be an object"]
        members: dict[str, Shape] = shape.members  # type: ignore[attr-defined]
        errors = [f"'{where}.{n}' is required" for n in meta.get("required", []) if n not in value]
        errors += [f"'{where}.{k}' is not a member of {shape.name}" for k in value if k not in members]
        if shape.name == "AttributeValue" and len(value) != 1:  # a union, though the model does not say so
            errors.append(f"{bad} set exactly one of {sorted(members)}")
        for k, v in value.items():
            if k in members:
                errors += wire_errors(v, members[k], f"{path}.{k}" if path else k)
        return errors
    if t == "list":
        if not isinstance(value, list):
            return [f"{bad} be a list"]
        errors = _range_errors(len(value), meta, bad, "have length")
        for i, v in enumerate(value):
            errors += wire_errors(v, shape.member, f"{where}[{i}]")  # type: ignore[attr-defined]
        return errors
    if t == "map":
        if not isinstance(value, dict):
            return [f"{bad} be an object"]
        errors = []
        for k, v in value.items():
            errors += wire_errors(k, shape.key, f"{where} key")  # type: ignore[attr-defined]
            errors += wire_errors(v, shape.value, f"{where}.{k}")  # type: ignore[attr-defined]
        return errors
    if t == "string":
        if not isinstance(value, str):
            return [f"{bad} be a string"]
        errors = _range_errors(len(value), meta, bad, "have length")
        if shape.enum and value not in shape.enum:  # type: ignore[attr-defined]
            errors.append(f"{bad} satisfy enum value set: {shape.enum}")  # type: ignore[attr-defined]
        if "pattern" in meta and not _pattern(meta["pattern"]).fullmatch(value):
            errors.append(f"{bad} satisfy regular expression pattern: {meta['pattern']}")
        return errors
    if t in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{bad} be an integer"]
        return _range_errors(value, meta, bad, "have value")
    if t == "boolean":
        return [] if isinstance(value, bool) else [f"{bad} be a boolean"]
    if t in ("timestamp", "double", "float"):  # JSON protocols send timestamps as epoch seconds
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{bad} be {'epoch seconds' if t == 'timestamp' else 'a number'}"]
    if t == "blob":
        return [] if isinstance(value, str) else [f"{bad} be base64 text"]
    return [f"'{where}' has shape type {t}, which this checker does not know"]


def _range_errors(n: int, meta: dict[str, Any], bad: str, what: str) -> list[str]:
    errors = []
    if "min" in meta and n < meta["min"]:
        errors.append(f"{bad} {what} greater than or equal to {meta['min']}")
    if "max" in meta and n > meta["max"]:
        errors.append(f"{bad} {what} less than or equal to {meta['max']}")
    return errors
