"""DynamoDB attribute values -> Arrow-ready Python values: binary, and JSON text for M, L and sets.

Maps, lists and sets have no Arrow type that fits every item (their members' types vary per item),
so the lake keeps them as JSON text. They are rendered from DynamoDB JSON straight to JSON text,
without building Python objects first, and numbers keep their exact text: a float would lose the
digits DynamoDB keeps (38 significant digits).
"""

from __future__ import annotations

import base64
import binascii
import json
import json.encoder
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from connectors.dynamodb.layout import number_shape

_quote: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]  # C, ensure_ascii=False
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?").fullmatch


def _binary(value: Any) -> bytes:
    """B from the wire (base64 text) or from boto3 (bytes)."""
    if type(value) is bytes:
        return value
    return binascii.a2b_base64(value, strict_mode=True)


def _number_json(text: str) -> str:
    if _JSON_NUMBER(text):
        return text
    shape = number_shape(text)  # an exact number in another spelling (".5", "1."): normalise it
    if shape is None:
        raise ValueError(f"{text!r} is not a number")
    return str(Decimal(text))


def _binary_json(value: Any) -> str:
    if type(value) is bytes:
        return '"' + base64.b64encode(value).decode("ascii") + '"'
    if type(value) is not str:
        raise TypeError(f"{value!r} is not base64 text")
    return _quote(value)


def _bool_json(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    raise TypeError(f"{value!r} is not a boolean")


def _json(typed: Mapping[str, Any]) -> str:
    ((code, value),) = typed.items()
    if code == "S":
        return _quote(value)
    if code == "N":
        return value if _JSON_NUMBER(value) else _number_json(value)
    if code == "M":
        return _map_json(value)
    return _JSON[code](value)


def _map_json(value: Mapping[str, Any]) -> str:
    # The common entry kinds are rendered inline: a call per entry is most of the cost here.
    parts = []
    for key, typed in value.items():
        ((code, item),) = typed.items()
        if code == "S":
            parts.append(f"{_quote(key)}:{_quote(item)}")
        elif code == "N" and _JSON_NUMBER(item):
            parts.append(f"{_quote(key)}:{item}")
        else:
            parts.append(f"{_quote(key)}:{_json(typed)}")
    return "{" + ",".join(parts) + "}"


def _list_json(value: Sequence[Any]) -> str:
    if type(value) is not list:
        raise TypeError(f"{value!r} is not a list")
    if not value:
        return "[]"
    return "[" + ",".join([_json(v) for v in value]) + "]"


def _set_json(render: Callable[[Any], str]) -> Callable[[Any], str]:
    def render_set(value: Any) -> str:
        if type(value) is not list:
            raise TypeError(f"{value!r} is not a list")
        return "[" + ",".join(map(render, value)) + "]"

    return render_set


_JSON: dict[str, Callable[[Any], str]] = {
    "S": _quote,
    "N": _number_json,
    "B": _binary_json,
    "BOOL": _bool_json,
    "NULL": lambda value: "null",
    "M": _map_json,
    "L": _list_json,
    "SS": _set_json(_quote),
    "NS": _set_json(_number_json),
    "BS": _set_json(_binary_json),
}
# Per-value conversions before pa.array (None: pa.array takes the wire value as it is).
CONVERTERS: dict[str | None, Callable[[Any], Any]] = {
    "B": _binary,
    "BS": lambda value: [_binary(b) for b in value],
    "M": _map_json,
    "L": _list_json,
}
