"""JSON Schema of a mapping file, and `check_schema`, which validates a document against it with
`jsonschema` before anything else happens.

Subschemas may carry `x-fix` (what to write instead) and `x-message` (what is wrong);
`check_schema` puts them into its error messages. Rules a schema cannot express (path syntax, templates, ISO
codes, phone regions, duplicate event names) are checked by transforms.mapping afterwards.
"""
from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable
from typing import Any

from transforms.errors import MappingFileError
from transforms.events import ACTION_SOURCES, EVENT_TYPES
from transforms.money import MONEY_UNITS
from transforms.timestamps import TIMESTAMP_UNITS
from transforms.user_fields import LOGICAL_FIELDS, PROFILES

FIELD_FIX = ("write a path (user.email), fallbacks ('a | b' or a list of paths), a template"
             " (order_{order_id}), or an object {path: ..., default: ...} / {constant: ...}")

SCALAR_TYPES = ["string", "number", "boolean"]
_WORDS = {"string": "text", "number": "number", "integer": "integer", "boolean": "true/false"}

# The mappings shipped in the package (transforms/presets/<name>.yaml), by the name
# `--mapping NAME` and `extends: NAME` take; rudderstack's warehouse tables are Segment's.
PRESET_FILES = {"ga4": "ga4.yaml", "segment": "segment.yaml", "rudderstack": "segment.yaml",
                "snowplow": "snowplow.yaml", "shopify": "shopify.yaml"}
PLACEHOLDERS = {"type": "array", "items": {"type": "string"},
                "x-fix": "list the texts that mean 'no value', e.g. ['(not set)', 'null']"}

# Members `data.custom` may not use: they are set by the mapper from data.* fields.
RESERVED_DATA_MEMBERS = ("type", "amount", "currency", "contents", "plan_id")


def field_spec(units: tuple[str, ...] | None = None, value_types: list[str] | None = None,
               values: list[Any] | None = None, allow_default: bool = True,
               allow_query: bool = True, options: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """A field: path text, a list of fallbacks, or {path|constant, default, unit}; null = unmapped.

    `options`: further keys this one field's object form takes (source_url's keep_query).
    """
    types = value_types or SCALAR_TYPES
    scalar: dict[str, Any] = {
        "type": types,
        "x-fix": f"write a {' or '.join(_WORDS[t] for t in types)} value; quote text that YAML"
                 " reads as something else (NO, yes, on, 007)"}
    if values is not None:
        scalar = {"enum": values, "x-fix": "use one of: " + ", ".join(map(str, values))}
    properties: dict[str, Any] = {
        "path": {"type": ["string", "array"], "minLength": 1, "minItems": 1,
                 "items": {"type": "string", "minLength": 1},
                 "x-fix": "write a path or a list of fallback paths"},
        "constant": scalar,
    }
    if allow_default:
        properties["default"] = scalar
    properties["placeholders"] = PLACEHOLDERS
    if allow_query:
        properties["query"] = {"type": "string", "minLength": 1,
                               "x-fix": "the name of a URL query parameter, e.g. oppref"}
    if units:
        properties["unit"] = {"enum": list(units), "x-fix": "use one of: " + ", ".join(units)}
    properties.update(options or {})
    return {
        "type": ["string", "array", "object", "null"],
        "minLength": 1,
        "minItems": 1,
        "items": {"type": "string", "minLength": 1, "x-fix": "each fallback is a path text"},
        "properties": properties,
        "additionalProperties": False,
        "if": {"type": "object"},
        "then": {"oneOf": [{"required": ["path"]}, {"required": ["constant"]}],
                 "x-message": "a field object needs exactly one of 'path' or 'constant'",
                 "x-fix": "write {path: some.column} or {constant: value}, not both or neither"},
        "x-fix": FIELD_FIX,
    }


def _section(properties: dict[str, Any], fix: str) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "additionalProperties": False,
            "x-fix": fix}


EVENT_SECTION = _section({
    "id": field_spec(allow_default=False),
    "type": field_spec(),
    "timestamp_ms": field_spec(units=TIMESTAMP_UNITS, value_types=["string", "integer"]),
    "custom_event_name": field_spec(value_types=["string"]),
    "oppref": field_spec(value_types=["string"]),
    "action_source": field_spec(values=sorted(ACTION_SOURCES)),
    "source_url": field_spec(value_types=["string"], options={
        "keep_query": {"type": "boolean",
                       "x-fix": "true keeps the query string; false (the default) sends origin"
                                " and path only"}}),
    "opt_out": field_spec(value_types=["boolean"]),
}, "event holds the top-level CAPI fields: id, type, timestamp_ms, custom_event_name, oppref,"
   " action_source, source_url, opt_out")

EVENT_NAMES_SECTION = _section({
    "replace": {"type": "boolean",
                "x-fix": "true replaces the built-in event-name table, false extends it"},
    "types": _section(
        {event_type: {"type": "array", "minItems": 1,
                      "items": {"type": "string", "minLength": 1},
                      "x-fix": f"list the source event names for {event_type}, e.g. [purchase]"}
         for event_type in sorted(EVENT_TYPES)},
        "keys are CAPI event types: " + ", ".join(sorted(EVENT_TYPES))),
    "exclude": {"type": "array", "items": {"type": "string", "minLength": 1},
                "x-fix": "list source event names or CAPI types to skip, e.g. [heartbeat]"},
}, "event_names holds: replace, types, exclude")

def _item_field(**kwargs: Any) -> dict[str, Any]:
    return field_spec(allow_query=False, **kwargs)


CONTENTS_SECTION = {
    "type": ["object", "null"],
    "properties": {
        "path": {"type": "string", "minLength": 1,
                 "x-fix": "the path of the list of items, e.g. items (leave it out with"
                          " group_by: each row of the group is one item)"},
        "fields": _section({
            "id": _item_field(value_types=["string"]),
            "group_id": _item_field(value_types=["string"]),
            "name": _item_field(value_types=["string"]),
            "content_type": _item_field(value_types=["string"]),
            "amount": _item_field(units=MONEY_UNITS, value_types=["number"]),
            "quantity": _item_field(value_types=["integer"]),
            "currency": _item_field(value_types=["string"]),
            "variant_dict": _item_field(value_types=["string"]),
        }, "contents fields are: id, group_id, name, content_type, amount, quantity, currency,"
           " variant_dict"),
    },
    "additionalProperties": False,
    "x-fix": "write contents: {path: items, fields: {id: items.X.id, ...}}",
}

DATA_SECTION = _section({
    "amount": field_spec(units=MONEY_UNITS, value_types=["number"]),
    "currency": field_spec(value_types=["string"]),
    "plan_id": field_spec(value_types=["string"]),
    "contents": CONTENTS_SECTION,
    "custom": {"type": "object",
               "propertyNames": {"pattern": "^[A-Za-z0-9_]+$",
                                 "not": {"enum": list(RESERVED_DATA_MEMBERS)},
                                 "x-fix": "name custom data members with letters, digits and"
                                          " '_' (not type, amount, currency, contents, plan_id)"},
               "additionalProperties": field_spec(),
               "x-fix": "custom: {member_name: path, ...} (sent only for custom events)"},
}, "data holds: amount, currency, plan_id, contents, custom")

USER_SECTION = _section({
    "enabled": {"type": "boolean", "x-fix": "true or false (false: no user object is sent)"},
    "profile": {"enum": sorted(PROFILES), "x-fix": "use one of: " + ", ".join(sorted(PROFILES))},
    "default_phone_region": {"type": ["string", "null"], "pattern": "^[A-Za-z]{2}$",
                             "x-fix": "an ISO 3166-1 alpha-2 code such as US, or null"},
    "fields": _section({logical: field_spec() for logical in LOGICAL_FIELDS},
                       "user fields are: " + ", ".join(LOGICAL_FIELDS)),
}, "user holds: enabled, profile, default_phone_region, fields")

CONSENT_SECTION = {
    "type": ["string", "array", "object", "null"],
    "minLength": 1,
    "minItems": 1,
    "items": {"type": "string", "minLength": 1},
    "properties": {
        "path": {"type": ["string", "array"], "minLength": 1, "minItems": 1,
                 "items": {"type": "string", "minLength": 1}},
        "granted": {"type": "array", "minItems": 1,
                    "items": {"type": ["string", "number", "boolean"]},
                    "x-fix": "list the values that mean consent, e.g. [true, granted]"},
    },
    "required": ["path"],
    "additionalProperties": False,
    "x-fix": "write consent: some.column, or {path: some.column, granted: [true, 'yes']}",
}

FILTER_SECTION = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "path": {"type": "string", "minLength": 1, "x-fix": "the column to test"},
            "in": {"type": "array", "minItems": 1, "items": {"type": SCALAR_TYPES},
                   "x-fix": "list the values to keep, e.g. [paid, partially_refunded]"},
            "not_in": {"type": "array", "minItems": 1, "items": {"type": SCALAR_TYPES},
                       "x-fix": "list the values to skip, e.g. [test]"},
        },
        "required": ["path"],
        "oneOf": [{"required": ["in"]}, {"required": ["not_in"]}],
        "additionalProperties": False,
        "x-message": "a filter needs exactly one of 'in' or 'not_in'",
        "x-fix": "write {path: financial_status, in: [paid, partially_refunded]}",
    },
    "x-fix": "filter: a list of {path: column, in: [values]} or {path: column, not_in: [...]}",
}

MAPPING_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "version": {"enum": [1], "x-fix": "write version: 1"},
        "extends": {"enum": ["default", *PRESET_FILES, None],
                    "x-fix": "write extends: default (or a preset: " + ", ".join(PRESET_FILES)
                             + ") to start from it, or leave the key out"},
        "placeholders": PLACEHOLDERS,
        "filter": FILTER_SECTION,
        "group_by": {"type": "string", "minLength": 1,
                     "x-fix": "the column whose rows make one event, e.g. Name (an order)"},
        "event": EVENT_SECTION,
        "event_names": EVENT_NAMES_SECTION,
        "data": DATA_SECTION,
        "user": USER_SECTION,
        "consent": CONSENT_SECTION,
        "pixel_id": field_spec(value_types=["string"]),
    },
    "additionalProperties": False,
    "if": {"not": {"required": ["extends"]}},
    "then": {
        "required": ["event"],
        "properties": {"event": {
            "required": ["id", "type"],
            "x-fix": "map at least event.id (a stable id, e.g. order_{order_id}) and event.type"
                     " (the column holding the event name, or {constant: purchase});"
                     " or write extends: default"}},
        "x-fix": "add an event section with id and type, or write extends: default",
    },
    "x-fix": "top-level keys are: version, extends, placeholders, filter, group_by, event,"
             " event_names, data, user, consent, pixel_id",
}


# --- checking a document --------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    """Built on first use: workers unpickle compiled plans and never check a document, and
    importing jsonschema costs each of them about 0.3 s of start-up."""
    import jsonschema
    return jsonschema.Draft202012Validator(MAPPING_SCHEMA)


def check_schema(document: dict[str, Any], name: str) -> None:
    problems = []
    for error in sorted(_validator().iter_errors(document), key=lambda e: list(map(str, e.path))):
        problems.extend(_describe_schema_error(error))
    if problems:
        raise MappingFileError(format_problems(name, problems))


def _key_path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def yaml_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _describe_schema_error(error: Any) -> list[tuple[str, str, str]]:
    """(key path, what is wrong, how to fix it) for one jsonschema.ValidationError."""
    path = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    fix = schema.get("x-fix", "see docs/mapping.md")
    kind = error.validator
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extras = [key for key in error.instance if key not in schema.get("properties", {})]
        out = []
        for key in extras:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            out.append((_key_path(path + [key]), f"unknown key {key!r}",
                        f"{hint}allowed keys here: {', '.join(allowed)}"))
        return out
    if kind == "type":
        expected = error.validator_value
        expected = [expected] if isinstance(expected, str) else expected
        wanted = " or ".join("mapping" if t == "object" else "list" if t == "array" else
                             "text" if t == "string" else t for t in expected if t != "null")
        return [(_key_path(path), f"expected {wanted}, found {yaml_type(error.instance)}", fix)]
    if kind == "enum":
        return [(_key_path(path), f"{error.instance!r} is not allowed here", fix)]
    if kind == "required":
        missing = [key for key in error.validator_value if key not in error.instance]
        return [(_key_path(path + missing[:1]), "is required but missing", fix)]
    if kind == "oneOf":
        return [(_key_path(path), schema.get("x-message", "does not match any allowed form"),
                 fix)]
    if kind in ("minLength", "minItems"):
        return [(_key_path(path), "must not be empty", fix)]
    if kind == "pattern":
        return [(_key_path(path), f"{error.instance!r} does not have the expected form", fix)]
    if kind == "propertyNames":
        bad = error.instance if isinstance(error.instance, str) else str(error.instance)
        return [(_key_path(path), f"the name {bad!r} cannot be used here", fix)]
    if kind == "not" and error.parent is None and isinstance(error.instance, str):
        return [(_key_path(path), f"the name {error.instance!r} is reserved", fix)]
    return [(_key_path(path), error.message, fix)]


def format_problems(name: str, problems: list[tuple[str, str, str]]) -> str:
    if len(problems) == 1:
        where, what, fix = problems[0]
        return f"Mapping file {name!r}: {where}: {what}. Fix: {fix}"
    lines = [f"Mapping file {name!r} has {len(problems)} problems:"]
    lines += [f"  - {where}: {what}. Fix: {fix}" for where, what, fix in problems]
    return "\n".join(lines)
