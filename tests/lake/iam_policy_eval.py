"""A small evaluator of exactly the IAM policy grammar `connectors.lake.tenant_policies` generates.

The moto server enforces IAM only when started with INITIAL_NO_AUTH_ACTION_COUNT, and even then
checks neither Resource nor Condition and substitutes no policy variables (moto's
`iam/access_control.py`: "TODO add support for the Resource and Condition parts"), so it cannot
tell tenant A's prefix from B's. This evaluator covers, with AWS's documented semantics:

* identity-based policies, Version 2012-10-17, `Effect: Allow` only (anything else is refused, so
  a generated Deny would fail the tests rather than be ignored);
* `Action`: exact names or `*`/`?` wildcards, case-insensitive;
* `Resource`: ARNs with `*` (any run of characters, `/` included) and `?`, case-sensitive;
* policy variables `${aws:PrincipalTag/<key>}` and `${aws:username}`: replaced by the request's
  value, taken literally (a `*` in a value is no wildcard); a variable whose key the request lacks
  makes that pattern match nothing;
* `Condition`: `StringLike` only, values ORed, keys ANDed; a key absent from the request fails it.
Decision: allowed iff some statement matches (no statement: implicit deny).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_VARIABLE = re.compile(r"\$\{([^}]+)\}")


class UnsupportedPolicy(ValueError):
    """The policy uses grammar this evaluator does not implement."""


def _pattern(text: str, context: Mapping[str, str], *, ignore_case: bool = False) -> re.Pattern[str] | None:
    """The regex of a policy string; None when it names a variable the request lacks."""
    out, pos = [], 0
    for m in _VARIABLE.finditer(text):
        out.append(_wildcards(text[pos : m.start()]))
        key = m.group(1)
        if key not in context:
            return None
        out.append(re.escape(context[key]))
        pos = m.end()
    out.append(_wildcards(text[pos:]))
    return re.compile("^" + "".join(out) + "$", re.IGNORECASE if ignore_case else 0)


def _wildcards(text: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)


def _matches(
    patterns: str | list[str], value: str, context: Mapping[str, str], ignore_case: bool = False
) -> bool:
    for p in [patterns] if isinstance(patterns, str) else patterns:
        compiled = _pattern(p, context, ignore_case=ignore_case)
        if compiled is not None and compiled.match(value):
            return True
    return False


def is_allowed(
    policy: Mapping[str, Any],
    action: str,
    resource: str,
    *,
    principal_tags: Mapping[str, str] | None = None,
    username: str | None = None,
    request: Mapping[str, str] | None = None,
) -> bool:
    """Whether `policy` allows `action` on `resource` for a principal with these tags, given the
    request's condition keys (`request`, e.g. ``{"s3:prefix": "..."}``)."""
    if policy.get("Version") != "2012-10-17":
        raise UnsupportedPolicy("policy variables need Version 2012-10-17")
    context = {f"aws:PrincipalTag/{k}": v for k, v in (principal_tags or {}).items()}
    if username is not None:
        context["aws:username"] = username
    statements = policy["Statement"]
    for st in [statements] if isinstance(statements, dict) else statements:
        unknown = set(st) - {"Sid", "Effect", "Action", "Resource", "Condition"}
        if unknown or st.get("Effect") != "Allow":
            raise UnsupportedPolicy(f"statement {st.get('Sid')}: only Allow with Action/Resource/Condition")
        if not _matches(st["Action"], action, {}, ignore_case=True):
            continue
        if not _matches(st["Resource"], resource, context):
            continue
        if _conditions_hold(st.get("Condition", {}), request or {}, context):
            return True
    return False


def _conditions_hold(
    conditions: Mapping[str, Any], request: Mapping[str, str], context: Mapping[str, str]
) -> bool:
    for operator, keys in conditions.items():
        if operator != "StringLike":
            raise UnsupportedPolicy(f"condition operator {operator}")
        for key, values in keys.items():
            if key not in request or not _matches(values, request[key], context):
                return False
    return True
