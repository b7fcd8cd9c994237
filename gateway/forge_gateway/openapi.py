"""The OpenAPI 3.0 document of the gateway, generated from the same bindings that route requests.

Schemas follow the proto3 JSON mapping the gateway speaks: lowerCamelCase property names,
enums as their value names, 64-bit integers as strings, Timestamp as an RFC 3339 date-time,
Duration as a ``"1.5s"`` string, Struct as a free-form object. Descriptions are the proto's
comments (see :mod:`gateway.comments`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from forge_gateway.routes import SCALAR_WKT, Binding, is_map, message_name, message_of

OPENAPI_VERSION = "3.0.3"
STATUS_SCHEMA = "google.rpc.Status"
_OPENAPI_METHODS = frozenset({"get", "put", "post", "delete", "patch", "options", "head", "trace"})
_REF = "#/components/schemas/"

_FD = FieldDescriptor
_SCALARS: dict[int, dict[str, Any]] = {
    _FD.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _FD.TYPE_FLOAT: {"type": "number", "format": "float"},
    _FD.TYPE_INT32: {"type": "integer", "format": "int32"},
    _FD.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _FD.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    _FD.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": 4294967295},
    _FD.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": 4294967295},
    # The JSON mapping writes 64-bit integers as strings (JavaScript numbers lose precision).
    _FD.TYPE_INT64: {"type": "string", "format": "int64"},
    _FD.TYPE_SINT64: {"type": "string", "format": "int64"},
    _FD.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    _FD.TYPE_UINT64: {"type": "string", "format": "uint64"},
    _FD.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    _FD.TYPE_BOOL: {"type": "boolean"},
    _FD.TYPE_STRING: {"type": "string"},
    _FD.TYPE_BYTES: {"type": "string", "format": "byte"},
}

_WKT: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
        "description": 'A duration in seconds with an "s" suffix, e.g. "1.5s".',
    },
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
    "google.protobuf.DoubleValue": {"type": "number", "format": "double", "nullable": True},
    "google.protobuf.FloatValue": {"type": "number", "format": "float", "nullable": True},
    "google.protobuf.Int64Value": {"type": "string", "format": "int64", "nullable": True},
    "google.protobuf.UInt64Value": {"type": "string", "format": "uint64", "nullable": True},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32", "nullable": True},
    "google.protobuf.UInt32Value": {"type": "integer", "format": "int64", "nullable": True},
    "google.protobuf.BoolValue": {"type": "boolean", "nullable": True},
    "google.protobuf.StringValue": {"type": "string", "nullable": True},
    "google.protobuf.BytesValue": {"type": "string", "format": "byte", "nullable": True},
}

_STATUS = {
    "type": "object",
    "description": "An error: a google.rpc.Status. `code` is the gRPC status code number.",
    "properties": {
        "code": {"type": "integer", "format": "int32"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": _WKT["google.protobuf.Any"]},
    },
    "required": ["code", "message", "details"],
}


class _Builder:
    def __init__(self, comments: Mapping[str, str]) -> None:
        self.comments = comments
        self.schemas: dict[str, Any] = {STATUS_SCHEMA: _STATUS}

    # --- schemas -------------------------------------------------------------------------

    def message_ref(self, desc: Descriptor) -> dict[str, Any]:
        if desc.full_name in _WKT:
            return dict(_WKT[desc.full_name])
        if desc.full_name not in self.schemas:
            self.schemas[desc.full_name] = {}  # placeholder first: messages may recurse
            self.schemas[desc.full_name] = self.message_schema(desc)
        return {"$ref": _REF + desc.full_name}

    def message_schema(self, desc: Descriptor, omit: frozenset[str] = frozenset()) -> Any:
        props = {
            f.json_name: self.field_schema(f) for f in desc.fields if f.name not in omit
        }
        schema: dict[str, Any] = {
            "type": "object",
            "properties": props,
            # Unknown fields are a 400, so the document says there are none.
            "additionalProperties": False,
        }
        text = self.comments.get(desc.full_name)
        if text:
            schema["description"] = text
        return schema

    def enum_ref(self, desc: EnumDescriptor) -> dict[str, Any]:
        if desc.full_name not in self.schemas:
            schema: dict[str, Any] = {"type": "string", "enum": [v.name for v in desc.values]}
            lines = [
                f"- `{v.name}`: {self.comments[desc.full_name + '.' + v.name]}"
                for v in desc.values
                if desc.full_name + "." + v.name in self.comments
            ]
            text = "\n".join(filter(None, [self.comments.get(desc.full_name, ""), *lines]))
            if text:
                schema["description"] = text
            self.schemas[desc.full_name] = schema
        return {"$ref": _REF + desc.full_name}

    def value_schema(self, f: FieldDescriptor) -> dict[str, Any]:
        """The schema of one value of ``f`` (an element, for repeated fields)."""
        if f.type == _FD.TYPE_MESSAGE:
            return self.message_ref(message_of(f))
        if f.type == _FD.TYPE_ENUM and f.enum_type is not None:
            return self.enum_ref(f.enum_type)
        return dict(_SCALARS[f.type])

    def field_schema(self, f: FieldDescriptor) -> dict[str, Any]:
        if is_map(f):
            value = message_of(f).fields_by_name["value"]
            schema: dict[str, Any] = {
                "type": "object",
                "additionalProperties": self.value_schema(value),
            }
        elif f.is_repeated:
            schema = {"type": "array", "items": self.value_schema(f)}
        else:
            schema = self.value_schema(f)
        text = self.comments.get(f.full_name)
        if text:
            if "$ref" in schema:
                # OpenAPI 3.0 ignores siblings of $ref; wrap it to keep the description.
                schema = {"allOf": [schema]}
            schema["description"] = text
        return schema

    # --- operations ----------------------------------------------------------------------

    def query_parameters(self, b: Binding) -> list[dict[str, Any]]:
        """Every field the query string may set: all but the path and body fields, nested
        messages flattened with dots, as the transcoder accepts them."""
        if b.body == "*":
            return []
        skip_top = {b.body} if b.body else set()
        path_fields = {".".join(p) for p in b.path_fields}
        out: list[dict[str, Any]] = []

        def walk(desc: Descriptor, prefix: str, seen: frozenset[str]) -> None:
            for f in desc.fields:
                name = prefix + f.name
                if (not prefix and f.name in skip_top) or name in path_fields:
                    continue
                type_name = message_name(f)
                if type_name and type_name not in SCALAR_WKT:
                    if (
                        not f.is_repeated
                        and not is_map(f)
                        and type_name not in _WKT
                        and type_name not in seen
                    ):
                        walk(message_of(f), name + ".", seen | {type_name})
                    continue
                param: dict[str, Any] = {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "schema": self.field_schema_inline(f),
                }
                if f.is_repeated:
                    param["style"] = "form"
                    param["explode"] = True
                text = self.comments.get(f.full_name)
                if text:
                    param["description"] = text
                out.append(param)

        walk(b.method.input_type, "", frozenset({b.method.input_type.full_name}))
        return out

    def field_schema_inline(self, f: FieldDescriptor) -> dict[str, Any]:
        """Like field_schema but without a top-level description (parameters carry their own)."""
        schema = self.field_schema(f)
        schema.pop("description", None)
        if list(schema) == ["allOf"]:
            inner: dict[str, Any] = schema["allOf"][0]
            return inner
        return schema

    def path_parameters(self, b: Binding) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        desc = b.method.input_type
        for var in b.template.variables:
            f = _leaf(desc, var.field_path)
            schema = self.field_schema_inline(f)
            if var.pattern != "*":
                schema = {"type": "string", "description": f"Matches `{var.pattern}`."}
            param: dict[str, Any] = {
                "name": ".".join(var.field_path),
                "in": "path",
                "required": True,
                "schema": schema,
            }
            text = self.comments.get(f.full_name)
            if text:
                param["description"] = text
            out.append(param)
        # Unnamed wildcards become parameters named {_N} (see PathTemplate.openapi_path).
        for piece in b.template.openapi_path.split("/"):
            if piece.startswith("{_"):
                name = piece[1:].split("}")[0]
                out.append(
                    {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                )
        return out

    def request_body(self, b: Binding) -> dict[str, Any] | None:
        if not b.body:
            return None
        desc = b.method.input_type
        if b.body == "*":
            top_path = frozenset(p[0] for p in b.path_fields)
            if top_path:
                schema = self.message_schema(desc, omit=top_path)
            else:
                schema = self.message_ref(desc)
        else:
            schema = self.field_schema_inline(desc.fields_by_name[b.body])
        return {
            # An empty body is read as {} (every field at its default).
            "required": False,
            "content": {"application/json": {"schema": schema}},
        }

    def responses(self, b: Binding) -> dict[str, Any]:
        out_desc = b.method.output_type
        if b.response_body:
            schema = self.field_schema_inline(out_desc.fields_by_name[b.response_body])
        else:
            schema = self.message_ref(out_desc)
        error = {
            "description": "An error, as a google.rpc.Status.",
            "content": {"application/json": {"schema": {"$ref": _REF + STATUS_SCHEMA}}},
        }
        if b.server_streaming:
            ok = {
                "description": (
                    "A stream of messages. By default newline-delimited JSON, one "
                    '`{"result": <message>}` per line and `{"error": <Status>}` if the stream '
                    "fails; with `Accept: text/event-stream`, Server-Sent Events whose `data` is "
                    "the bare message (and an `error` event carrying a Status)."
                ),
                "content": {
                    "application/x-ndjson": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "result": schema,
                                "error": {"$ref": _REF + STATUS_SCHEMA},
                            },
                        }
                    },
                    "text/event-stream": {"schema": {"type": "string"}},
                },
            }
        else:
            ok = {
                "description": "A successful response.",
                "content": {"application/json": {"schema": schema}},
            }
        return {"200": ok, "default": error}

    def operation(self, b: Binding) -> dict[str, Any]:
        service = b.method.containing_service
        op_id = f"{service.name}_{b.method.name}" + (str(b.index + 1) if b.index else "")
        op: dict[str, Any] = {
            "operationId": op_id,
            "tags": [service.name],
            "parameters": self.path_parameters(b) + self.query_parameters(b),
            "responses": self.responses(b),
        }
        text = self.comments.get(b.method.full_name)
        if text:
            op["summary"] = text.split("\n\n")[0].split(". ")[0].replace("\n", " ").rstrip(".")
            op["description"] = text
        body = self.request_body(b)
        if body is not None:
            op["requestBody"] = body
        if b.server_streaming:
            op["x-server-streaming"] = True
        op["x-grpc-method"] = b.grpc_path
        return op


def _leaf(desc: Descriptor, path: Sequence[str]) -> FieldDescriptor:
    current = desc
    f: FieldDescriptor | None = None
    for part in path:
        f = current.fields_by_name.get(part) or next(
            (c for c in current.fields if c.json_name == part), None
        )
        assert f is not None, "routes._check validated every path variable"
        if f.message_type is not None:
            current = f.message_type
    assert f is not None
    return f


def build(
    bindings: Sequence[Binding],
    comments: Mapping[str, str] | None = None,
    *,
    title: str = "Forge API",
    version: str = "v1",
) -> dict[str, Any]:
    """The OpenAPI 3.0.3 document for ``bindings``: one operation per binding whose HTTP method
    OpenAPI knows (custom methods are served but cannot be described), schemas for every message
    and enum they reach, and the error schema every operation answers by default."""
    builder = _Builder(comments or {})
    paths: dict[str, dict[str, Any]] = {}
    services: dict[str, str] = {}
    for b in sorted(bindings, key=lambda b: (b.template.openapi_path, b.http_method)):
        verb = b.http_method.lower()
        if verb not in _OPENAPI_METHODS:
            continue
        service = b.method.containing_service
        services[service.name] = (comments or {}).get(service.full_name, "")
        paths.setdefault(b.template.openapi_path, {})[verb] = builder.operation(b)
    description = "\n\n".join(f"**{name}**: {text}" if text else name for name, text in services.items())
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "tags": [{"name": name, "description": text} for name, text in services.items()],
        "paths": paths,
        "components": {"schemas": dict(sorted(builder.schemas.items()))},
    }
