"""Python types as JSON schemas, and JSON values back as those types: what
``engine.chat.completions.parse(response_format=SomeType)`` needs.

Pure Python (it runs in Pyodide, where pydantic may be absent): dataclasses, TypedDicts,
``str``/``int``/``float``/``bool``/``None``, ``list[T]``, ``tuple[T, ...]``, ``dict[str, T]``,
``T | None``, unions, ``Literal[...]`` and ``Enum`` subclasses. A class with pydantic's
``model_json_schema`` / ``model_validate`` is used through those.
"""

from __future__ import annotations

import dataclasses
import enum
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

from .errors import InvalidRequestFieldError

_SCALARS: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _unsupported(tp: Any) -> InvalidRequestFieldError:
    return InvalidRequestFieldError(
        f"response_format: {tp!r} has no JSON schema here (use a dataclass, a TypedDict, "
        "scalars, lists, dicts with str keys, unions, Literal or Enum)",
        field="response_format",
    )


def json_schema(tp: Any) -> dict[str, Any]:
    """The JSON schema of ``tp``: every field required unless it has a default (a dataclass) or
    is not total (a TypedDict); no other properties."""
    if hasattr(tp, "model_json_schema"):
        schema: dict[str, Any] = tp.model_json_schema()
        return schema
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    if tp is Any:
        return {}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        return {"anyOf": [json_schema(a) for a in args]}
    if origin is list or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        return {"type": "array", "items": json_schema(args[0])}
    if origin is dict and args and args[0] is str:
        return {"type": "object", "additionalProperties": json_schema(args[1])}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = get_type_hints(tp)
        fields = [f for f in dataclasses.fields(tp) if f.init]
        missing = dataclasses.MISSING
        required = [f.name for f in fields if f.default is missing and f.default_factory is missing]
        return _object({f.name: json_schema(hints[f.name]) for f in fields}, required)
    if is_typeddict(tp):
        hints = get_type_hints(tp)
        return _object({k: json_schema(v) for k, v in hints.items()}, sorted(tp.__required_keys__))
    raise _unsupported(tp)


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def build(tp: Any, value: Any) -> Any:
    """``value`` (parsed JSON that matches ``json_schema(tp)``) as a ``tp``."""
    if hasattr(tp, "model_validate"):
        return tp.model_validate(value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        for arg in args:
            if _matches(arg, value):
                return build(arg, value)
        return value
    if origin is list:
        return [build(args[0], v) for v in value]
    if origin is tuple:
        return tuple(build(args[0], v) for v in value)
    if origin is dict:
        return {k: build(args[1], v) for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = get_type_hints(tp)
        return tp(**{k: build(hints[k], v) for k, v in value.items()})
    if is_typeddict(tp):
        hints = get_type_hints(tp)
        return {k: build(hints[k], v) for k, v in value.items()}
    if tp is float and isinstance(value, int):
        return float(value)
    return value


def _matches(tp: Any, value: Any) -> bool:
    """Whether ``value`` is the JSON of ``tp`` at its top level (to pick a union's member)."""
    if tp in _SCALARS:
        if tp is float:
            return isinstance(value, int | float) and not isinstance(value, bool)
        if tp is int:
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, tp)
    origin = get_origin(tp)
    if origin is Literal:
        return value in get_args(tp)
    if origin in (list, tuple):
        return isinstance(value, list)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return value in [m.value for m in tp]
    return isinstance(value, dict)


def response_format(tp: Any) -> dict[str, Any]:
    """OpenAI's ``json_schema`` response_format for ``tp``."""
    name = getattr(tp, "__name__", "response")
    return {"type": "json_schema", "json_schema": {"name": name, "schema": json_schema(tp), "strict": True}}


__all__ = ["build", "json_schema", "response_format"]
