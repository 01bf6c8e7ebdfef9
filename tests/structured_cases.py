"""JSON schemas that constrained decoding must satisfy on any model, a gibberish one included.

Every string is bounded (``maxLength``, ``enum``, ``pattern``, ``format``-free), every array has
``maxItems`` and every number its range, so even a random-weight model reaches the end of the
schema within ``MAX_TOKENS``. Host, kernel and browser tests share them.
"""

from __future__ import annotations

from typing import Any

MAX_TOKENS = 400

SHORT = {"type": "string", "maxLength": 6}

SCHEMAS: dict[str, dict[str, Any]] = {
    "flat-object": {
        "type": "object",
        "properties": {"name": SHORT, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
        "required": ["name", "age"],
    },
    "boolean-field": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
    "null-field": {"type": "object", "properties": {"nothing": {"type": "null"}}, "required": ["nothing"]},
    "string-enum": {
        "type": "object",
        "properties": {"color": {"enum": ["red", "green", "blue"]}},
        "required": ["color"],
    },
    "mixed-enum": {
        "type": "object",
        "properties": {"v": {"enum": [1, "two", True, None]}},
        "required": ["v"],
    },
    "const": {"type": "object", "properties": {"kind": {"const": "point"}}, "required": ["kind"]},
    "integer-range": {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": -20, "maximum": 20}},
        "required": ["n"],
    },
    "exclusive-bounds": {
        "type": "object",
        "properties": {"n": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10}},
        "required": ["n"],
    },
    "pattern": {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"}},
        "required": ["code"],
    },
    "date-pattern": {
        "type": "object",
        "properties": {"day": {"type": "string", "pattern": "^20[0-9]{2}-(0[1-9]|1[0-2])-[0-2][0-9]$"}},
        "required": ["day"],
    },
    "string-lengths": {
        "type": "object",
        "properties": {"word": {"type": "string", "minLength": 2, "maxLength": 4}},
        "required": ["word"],
    },
    "array-of-integers": {
        "type": "object",
        "properties": {
            "xs": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "maxItems": 4}
        },
        "required": ["xs"],
    },
    "array-lengths": {
        "type": "object",
        "properties": {"xs": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 2, "maxItems": 3}},
        "required": ["xs"],
    },
    "top-level-array": {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 3},
    "nested-object": {
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 999}, "tag": SHORT},
                "required": ["id", "tag"],
            }
        },
        "required": ["user"],
    },
    "array-of-objects": {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "maxItems": 2,
                "items": {
                    "type": "object",
                    "properties": {"sku": SHORT, "qty": {"type": "integer", "minimum": 1, "maximum": 5}},
                    "required": ["sku", "qty"],
                },
            }
        },
        "required": ["items"],
    },
    "optional-fields": {
        "type": "object",
        "properties": {
            "a": {"type": "boolean"},
            "b": SHORT,
            "c": {"type": "integer", "minimum": 0, "maximum": 3},
        },
        "required": ["a"],
    },
    "any-of": {
        "type": "object",
        "properties": {
            "v": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 9}, {"type": "boolean"}]}
        },
        "required": ["v"],
    },
    "ref-and-defs": {
        "type": "object",
        "$defs": {
            "pt": {
                "type": "object",
                "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 9}},
                "required": ["x"],
            }
        },
        "properties": {"from": {"$ref": "#/$defs/pt"}, "to": {"$ref": "#/$defs/pt"}},
        "required": ["from", "to"],
    },
    "nullable": {
        "type": "object",
        "properties": {"maybe": {"type": ["integer", "null"], "minimum": 0, "maximum": 5}},
        "required": ["maybe"],
    },
    "deep-nesting": {
        "type": "object",
        "properties": {
            "a": {
                "type": "object",
                "properties": {
                    "b": {
                        "type": "object",
                        "properties": {"c": {"type": "array", "items": {"const": 0}, "maxItems": 2}},
                        "required": ["c"],
                    }
                },
                "required": ["b"],
            }
        },
        "required": ["a"],
    },
    "no-extra-properties": {
        "type": "object",
        "properties": {"only": {"type": "boolean"}},
        "required": ["only"],
        "additionalProperties": False,
    },
}

EBNF_YES_NO = 'root ::= ("yes" | "no") "." | "maybe"'
"""An EBNF grammar case: its whole language, so a test can check membership exactly."""
EBNF_LANGUAGE = {"yes.", "no.", "maybe"}
