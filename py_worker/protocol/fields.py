"""Typed reads of request fields: wrong types, missing fields and non-finite numbers are errors.

Requests arrive as plain dicts decoded from JSON or converted from JS objects. JS has one
number type, so an integral float (``2.0``) counts as an integer, as ``Number.isInteger`` does;
JSON ``true`` arrives as a Python bool, which is never accepted as a number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import InvalidRequestFieldError, UnsupportedFieldsError


def is_number(value: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_integer(value: Any) -> int | None:
    """``value`` as an int when it is an integral, finite number; otherwise None."""
    if not is_number(value):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        return int(value)
    return int(value)


def bad_field(field: str, expected: str, value: Any) -> InvalidRequestFieldError:
    """The error for a field of the wrong type or shape, naming the field."""
    return InvalidRequestFieldError(
        f"`{field}` must be {expected}, but got {_show(value)}.", field=field, expected=expected
    )


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def require_mapping(value: Any, name: str) -> Mapping[str, Any]:
    """``value`` itself when it is a dict-like object."""
    if not isinstance(value, Mapping):
        raise bad_field(name, "an object", value)
    return value


def present(d: Mapping[str, Any], key: str) -> bool:
    """Whether ``key`` is set to something other than null."""
    return d.get(key) is not None


def get_number(d: Mapping[str, Any], key: str) -> float | None:
    """An optional finite number."""
    value = d.get(key)
    if value is None:
        return None
    if not is_number(value):
        raise bad_field(key, "a number", value)
    if not math.isfinite(value):
        raise bad_field(key, "a finite number", value)
    return float(value)


def get_integer(d: Mapping[str, Any], key: str) -> int | None:
    """An optional integer (an integral float is accepted)."""
    value = d.get(key)
    if value is None:
        return None
    result = as_integer(value)
    if result is None:
        raise bad_field(key, "an integer", value)
    return result


def get_bool(d: Mapping[str, Any], key: str, default: bool = False) -> bool:
    """An optional boolean; null means ``default``."""
    value = d.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_field(key, "a boolean", value)
    return value


def get_string(d: Mapping[str, Any], key: str) -> str | None:
    """An optional string."""
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_field(key, "a string", value)
    return value


def reject_unsupported(d: Mapping[str, Any], unsupported: Iterable[str], target: str) -> None:
    """Reject fields web-llm declares unsupported; set at all (even to null) counts, as in web-llm."""
    found = [f for f in unsupported if f in d]
    if found:
        raise UnsupportedFieldsError(
            f"The following fields in {target} are not yet supported: {', '.join(found)}",
            fields_found=found,
            target=target,
        )
