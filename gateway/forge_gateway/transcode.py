"""HTTP request → request message, response message → JSON, by the proto3 JSON mapping.

The request message is filled in grpc-gateway's order: the body (all of it for ``body: "*"``,
or one field), then the query string (only when the rule has no ``body: "*"``), then the path
variables, which win. Field names are accepted as written in the proto or in lowerCamelCase;
output is lowerCamelCase with every scalar, enum and repeated field present even at its default,
so clients never guess at defaults (unset message fields, such as timestamps, are absent).

The body is read as strict JSON (RFC 8259): ``NaN`` and ``Infinity`` are not numbers, a number
past the range of a double is not silently infinite, an integer past 64 bits (which no number
field holds, and a Struct would round) is not silently 1e308, and an object may not give a key
twice. Each is a TranscodeError naming where it is (``jobs[3].payload.n``).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from forge_common.structs import whole
from forge_gateway.routes import (
    SCALAR_WKT,
    Binding,
    field_by_any_name,
    is_map,
    is_message,
    message_name,
    message_of,
)

# json_format raises these for input it cannot map (besides its own ParseError): e.g. a list
# where an object belongs, or a Struct nested deeper than the recursion limit.
_PARSE_ERRORS = (json_format.ParseError, TypeError, ValueError, AttributeError, RecursionError)

# The integers some proto number field holds (int64's least to uint64's most).
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_INT_DIGITS = len(str(_INT_MAX))  # more digits are past the range: no need to convert them

_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})


class TranscodeError(ValueError):
    """The HTTP request cannot become the RPC's request message; the message names why.

    Answered as INVALID_ARGUMENT (400).
    """


def message_class(desc: Descriptor) -> type[Message]:
    """The generated (or factory-made) message class for a descriptor."""
    return GetMessageClass(desc)


def build_request(
    binding: Binding,
    path_params: Mapping[tuple[str, ...], str],
    query: Iterable[tuple[str, str]],
    body: bytes,
) -> Message:
    """The request message for ``binding`` from the path variables, query pairs and raw body.

    Raises TranscodeError for malformed JSON, unknown fields (in the body or the query), values
    of the wrong type, a query parameter naming a field the path or body already sets, or a body
    sent to a route that takes none.
    """
    desc = binding.method.input_type
    message = message_class(desc)()
    body_field = binding.body
    if body_field:
        root = "" if body_field == "*" else body_field
        value = _parse_json(body, root) if body.strip() else None
        if value is not None:
            if body_field == "*":
                if not isinstance(value, dict):
                    raise TranscodeError(
                        f"request body must be a JSON object ({desc.full_name}), "
                        f"got {type(value).__name__}"
                    )
                _merge(value, message, "request body")
            else:
                _merge({body_field: value}, message, "request body")
    elif body.strip() and _parse_json(body, "") != {}:
        # A route without a body reads everything from the path and query; silently dropping a
        # body the caller took the trouble to send would hide a mistake.
        raise TranscodeError(
            f"{binding.http_method} {binding.template.source} takes no request body; "
            "send the fields as query parameters"
        )

    query_list = list(query)
    if query_list:
        if body_field == "*":
            names = ", ".join(sorted({k for k, _ in query_list}))
            raise TranscodeError(
                f"unknown query parameter(s) {names}: every field of this route is in the body"
            )
        _merge(_query_dict(binding, query_list), message, "query string")

    if path_params:
        tree: dict[str, Any] = {}
        for path, raw in path_params.items():
            leaf = _walk(desc, path)
            _put(tree, [f.name for f in _fields_along(desc, path)], _scalar(leaf, raw))
        _merge(tree, message, "path")
    return message


class _Refused:
    """A value the JSON reader refused, reported with its place once the whole body is read."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem


def _parse_json(body: bytes, root: str) -> Any:
    """The body as strict JSON; TranscodeError naming the place (under ``root``, the field the
    body fills, "" for the whole message) of a value no field can hold as sent."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TranscodeError(f"request body is not UTF-8: {e}") from None
    refused: list[_Refused] = []

    def refuse(problem: str) -> _Refused:
        refused.append(marker := _Refused(problem))
        return marker

    def integer(literal: str) -> int | _Refused:
        if len(literal.lstrip("-")) <= _INT_DIGITS and _INT_MIN <= (n := int(literal)) <= _INT_MAX:
            return n
        return refuse(f"the integer {_abbreviate(literal)} is past the 64-bit range of every "
                      "number field (send it as a string)")

    def number(literal: str) -> float | _Refused:
        n = float(literal)
        return n if math.isfinite(n) else refuse(
            f"{_abbreviate(literal)} is past the range of a double")

    def obj(pairs: list[tuple[str, Any]]) -> dict[str, Any] | _Refused:
        value = dict(pairs)
        if len(value) == len(pairs):
            return value
        twice = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        return refuse(f"the key {_abbreviate(twice)!r} is given twice")

    try:
        value = json.loads(text, parse_int=integer, parse_float=number, object_pairs_hook=obj,
                           parse_constant=lambda name: refuse(f"{name} is not a JSON number"))
    except json.JSONDecodeError as e:
        raise TranscodeError(f"malformed JSON in request body: {e}") from None
    except RecursionError:
        raise TranscodeError("malformed JSON in request body: nested too deeply") from None
    if refused:
        _report_refused(value, root)
    return value


def _report_refused(value: Any, root: str) -> None:
    """Raise TranscodeError for the first refused value in document order, with its path."""
    stack = [(value, root)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, _Refused):
            where = f"{path}: " if path else ""
            raise TranscodeError(f"invalid request body: {where}{item.problem}")
        if isinstance(item, dict):
            keys = [(v, f"{path}.{_abbreviate(k)}" if path else _abbreviate(k))
                    for k, v in item.items()]
            stack.extend(reversed(keys))
        elif isinstance(item, list):
            stack.extend(reversed([(v, f"{path}[{i}]") for i, v in enumerate(item)]))


def _abbreviate(text: str, most: int = 40) -> str:
    """``text``, or its ends and its length when it is longer than ``most`` characters."""
    if len(text) <= most:
        return text
    digits = text.lstrip("-")
    size = f"{len(digits)} digits" if digits.isdigit() else f"{len(text)} characters"
    return f"{text[:12]}…{text[-12:]} ({size})"


def _merge(value: dict[str, Any], message: Message, where: str) -> None:
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=False)
    except _PARSE_ERRORS as e:
        raise TranscodeError(f"invalid {where}: {_clean(str(e))}") from None


def _clean(text: str) -> str:
    # json_format's messages span lines (a "no field named" error lists the available fields
    # on a second line); a Status message reads better on one.
    return " ".join(text.split())


def _fields_along(desc: Descriptor, path: tuple[str, ...]) -> list[FieldDescriptor]:
    out: list[FieldDescriptor] = []
    current = desc
    for i, part in enumerate(path):
        f = field_by_any_name(current, part)
        if f is None:
            raise TranscodeError(f"no field {'.'.join(path)} in {desc.full_name}")
        out.append(f)
        if i < len(path) - 1:
            if not is_message(f):
                raise TranscodeError(f"no field {'.'.join(path)} in {desc.full_name}")
            current = message_of(f)
    return out


def _walk(desc: Descriptor, path: tuple[str, ...]) -> FieldDescriptor:
    return _fields_along(desc, path)[-1]


def _put(tree: dict[str, Any], names: list[str], value: Any, repeated: bool = False) -> None:
    node = tree
    for name in names[:-1]:
        child = node.setdefault(name, {})
        node = child
    if repeated:
        node.setdefault(names[-1], []).append(value)
    else:
        node[names[-1]] = value


def _scalar(f: FieldDescriptor, raw: str) -> Any:
    """A path or query string as the JSON value json_format expects for field ``f``.

    Numbers, bytes and the string-form well-known types are accepted as strings by the JSON
    mapping already. Booleans need converting (grpc-gateway takes Go's ParseBool set), and enum
    names are matched in any case (``status=dead``): grpc-gateway takes only the exact name,
    which trips up people typing URLs by hand. A name that matches more than one value
    when case is ignored must be exact.
    """
    enum = f.enum_type
    if enum is not None and raw not in enum.values_by_name:
        folded = [v.name for v in enum.values if v.name.upper() == raw.upper()]
        return folded[0] if len(folded) == 1 else raw
    is_bool = (
        f.type == FieldDescriptor.TYPE_BOOL or message_name(f) == "google.protobuf.BoolValue"
    )
    if is_bool:
        if raw in _TRUE:
            return True
        if raw in _FALSE:
            return False
        raise TranscodeError(f"{f.name}: not a boolean: {raw!r}")
    return raw


def _query_dict(binding: Binding, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    desc = binding.method.input_type
    bound = {tuple(_proto_names(desc, p)) for p in binding.path_fields if _resolvable(desc, p)}
    body_field = binding.body
    tree: dict[str, Any] = {}
    seen: set[tuple[str, ...]] = set()
    for key, raw in pairs:
        path = tuple(key.split("."))
        try:
            fields = _fields_along(desc, path)
        except TranscodeError:
            raise TranscodeError(f"unknown query parameter {key!r}") from None
        names = tuple(f.name for f in fields)
        for f in fields[:-1]:
            if f.is_repeated or not is_message(f):
                raise TranscodeError(f"query parameter {key!r}: {f.name} cannot be traversed")
        leaf = fields[-1]
        if names[0] == body_field:
            raise TranscodeError(f"query parameter {key!r}: that field comes from the body")
        if names in bound:
            raise TranscodeError(f"query parameter {key!r}: that field comes from the path")
        if not _query_settable(leaf):
            raise TranscodeError(
                f"query parameter {key!r}: a {_kind(leaf)} field cannot be set from the query"
            )
        repeated = leaf.is_repeated
        if not repeated and names in seen:
            raise TranscodeError(f"query parameter {key!r} given more than once")
        seen.add(names)
        _put(tree, list(names), _scalar(leaf, raw), repeated=repeated)
    return tree


def _resolvable(desc: Descriptor, path: tuple[str, ...]) -> bool:
    try:
        _fields_along(desc, path)
    except TranscodeError:
        return False
    return True


def _proto_names(desc: Descriptor, path: tuple[str, ...]) -> list[str]:
    return [f.name for f in _fields_along(desc, path)]


def _query_settable(f: FieldDescriptor) -> bool:
    if is_message(f):
        return not is_map(f) and message_name(f) in SCALAR_WKT
    return True


def _kind(f: FieldDescriptor) -> str:
    if is_map(f):
        return "map"
    return message_name(f) or "non-scalar"


def message_to_json(message: Message) -> dict[str, Any]:
    """The proto3 JSON form of a message: lowerCamelCase names, enums by name, int64 as strings,
    RFC 3339 timestamps, and every field without presence printed even at its default. Whole
    numbers print without a fraction, as grpc-gateway's protojson prints them: a payload sent
    as ``{"n": 1}`` (a Struct holds every number as a double) comes back as ``{"n": 1}``, not
    ``{"n": 1.0}``."""
    out: dict[str, Any] = _whole_numbers(json_format.MessageToDict(
        message, always_print_fields_with_no_presence=True
    ))
    return out


def _whole_numbers(value: Any) -> Any:
    """``value`` with each float that holds a whole number below 2**53 as an int
    (``forge_common.structs.whole``, the rule handlers' payloads follow)."""
    if isinstance(value, float):
        return whole(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def response_json(binding: Binding, message: Message) -> Any:
    """What the route answers: the whole message, or its ``response_body`` field's JSON value
    (``null`` for an unset message field)."""
    if not binding.response_body:
        return message_to_json(message)
    f = message.DESCRIPTOR.fields_by_name[binding.response_body]
    return message_to_json(message).get(f.json_name)


def encode(value: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
