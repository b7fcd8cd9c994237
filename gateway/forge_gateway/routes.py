"""HTTP routes built from the ``google.api.http`` annotations of gRPC service descriptors.

Nothing here knows an RPC by name: :func:`bindings_for_files` walks every service of the
given files, reads each method's ``HttpRule`` (and its ``additional_bindings``) and compiles
the path templates, so an RPC newly annotated in the proto is served once the generated code
is rebuilt. Template syntax and matching follow google/api/http.proto::

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    FieldPath = IDENT { "." IDENT } ;
    Verb     = ":" LITERAL ;
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor, MethodDescriptor

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TemplateError(ValueError):
    """A path template or an HttpRule in the proto is malformed; the message says where."""


@dataclass(frozen=True)
class Variable:
    """A ``{field.path=...}`` capture of a path template."""

    field_path: tuple[str, ...]
    group: str
    """Name of the regex group that captures it."""
    multi_segment: bool
    """True when it can span several segments (its pattern has ``**`` or a ``/``)."""
    pattern: str
    """The variable's own segments as written (``*`` when none were given)."""


@dataclass(frozen=True)
class PathTemplate:
    """A compiled path template: match raw request paths and extract the variables."""

    source: str
    regex: re.Pattern[str]
    variables: tuple[Variable, ...]
    verb: str | None
    literal_segments: int
    deep_wildcards: int
    openapi_path: str
    """The template with each variable written as ``{field.path}``, as OpenAPI wants it."""

    @classmethod
    def parse(cls, source: str) -> PathTemplate:
        """Compile ``source``; raise TemplateError naming the problem if it is not a template."""
        if not source.startswith("/"):
            raise TemplateError(f"path template must start with '/': {source!r}")
        body, verb = _split_verb(source)
        segments = _split_top(body[1:], "/")
        counter = _Counter()
        regex_parts: list[str] = []
        api_parts: list[str] = []
        variables: list[Variable] = []
        literals = deep = 0
        for seg in segments:
            if seg.startswith("{"):
                if not seg.endswith("}"):
                    raise TemplateError(f"unterminated variable in {source!r}")
                inner = seg[1:-1]
                name, _, pattern = inner.partition("=")
                path = tuple(name.split("."))
                if not all(_IDENT.match(p) for p in path):
                    raise TemplateError(f"bad field path {name!r} in {source!r}")
                pattern = pattern or "*"
                sub = _split_top(pattern, "/")
                sub_regex: list[str] = []
                for s in sub:
                    if s.startswith("{"):
                        raise TemplateError(f"nested variable in {source!r}")
                    sub_regex.append(_segment_regex(s, source))
                    literals += s not in ("*", "**")
                    deep += s == "**"
                group = f"v{counter.next()}"
                multi = len(sub) > 1 or "**" in sub
                variables.append(Variable(path, group, multi, pattern))
                regex_parts.append(f"(?P<{group}>{'/'.join(sub_regex)})")
                api_parts.append("{" + name + "}")
            else:
                regex_parts.append(_segment_regex(seg, source))
                literals += seg not in ("*", "**")
                deep += seg == "**"
                # OpenAPI cannot express an unnamed wildcard; name it so the path stays valid.
                api_parts.append(seg if seg not in ("*", "**") else f"{{_{counter.next()}}}")
        verb_regex = re.escape(":" + verb) if verb is not None else ""
        regex = re.compile("^/" + "/".join(regex_parts) + verb_regex + "$")
        names = [v.field_path for v in variables]
        if len(set(names)) != len(names):
            raise TemplateError(f"a field is bound twice in {source!r}")
        openapi_path = "/" + "/".join(api_parts) + (":" + verb if verb is not None else "")
        return cls(source, regex, tuple(variables), verb, literals, deep, openapi_path)

    def match(self, raw_path: str) -> dict[tuple[str, ...], str] | None:
        """The decoded variable values if the (still percent-encoded) path matches, else None.

        Single-segment values are fully percent-decoded; multi-segment ones keep ``%2F`` encoded
        so a decoded slash cannot be confused with a segment boundary (grpc-gateway's rule).
        """
        m = self.regex.match(raw_path)
        if m is None:
            return None
        out: dict[tuple[str, ...], str] = {}
        for var in self.variables:
            raw = m.group(var.group)
            if var.multi_segment:
                out[var.field_path] = "%2F".join(unquote(p) for p in re.split("%2[Ff]", raw))
            else:
                out[var.field_path] = unquote(raw)
        return out


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def next(self) -> int:
        self.n += 1
        return self.n - 1


def _split_verb(source: str) -> tuple[str, str | None]:
    """Split ``/a/{b}:verb`` into (``/a/{b}``, ``verb``): a ``:`` outside braces in the last
    segment starts the verb."""
    depth = 0
    last_slash = -1
    colon = -1
    for i, ch in enumerate(source):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0 and ch == "/":
            last_slash = i
            colon = -1
        elif depth == 0 and ch == ":" and colon < 0 and i > last_slash:
            colon = i
    if depth != 0:
        raise TemplateError(f"unbalanced braces in {source!r}")
    if colon < 0:
        return source, None
    verb = source[colon + 1 :]
    if not verb or "/" in verb:
        raise TemplateError(f"bad verb in {source!r}")
    return source[:colon], verb


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside braces."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _segment_regex(seg: str, source: str) -> str:
    if seg == "*":
        return "[^/]+"
    if seg == "**":
        return ".*"
    if not seg or any(c in seg for c in "{}*"):
        raise TemplateError(f"bad segment {seg!r} in {source!r}")
    return re.escape(seg)


@dataclass(frozen=True)
class Binding:
    """One HTTP route of one RPC: a verb, a path template and how the body maps."""

    method: MethodDescriptor
    http_method: str
    template: PathTemplate
    body: str
    """"" (no body: non-path fields come from the query), "*" (the whole request message) or a
    top-level field name that the body fills."""
    response_body: str
    """"" for the whole response message, else the top-level field that is the response."""
    index: int
    """0 for the primary rule, 1.. for ``additional_bindings`` in order."""
    grpc_path: str = field(init=False)
    """The method's gRPC path, ``/package.Service/Method``."""

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "grpc_path", f"/{self.method.containing_service.full_name}/{self.method.name}"
        )

    @property
    def server_streaming(self) -> bool:
        return bool(self.method.server_streaming)

    @property
    def path_fields(self) -> frozenset[tuple[str, ...]]:
        return frozenset(v.field_path for v in self.template.variables)

    def sort_key(self) -> tuple[int, int, int, int]:
        """More specific templates first: with a verb, more literals, fewer ``**``."""
        t = self.template
        return (0 if t.verb else 1, -t.literal_segments, t.deep_wildcards, len(t.variables))


def http_rule(method: MethodDescriptor) -> http_pb2.HttpRule | None:
    """The method's ``google.api.http`` option, or None when it has none."""
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return None
    rule: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
    return rule


def bindings_for_method(method: MethodDescriptor) -> list[Binding]:
    """Every binding of one method (primary rule first); [] when it is not annotated.

    Raises TemplateError when the rule names fields the request or response does not have, so a
    broken annotation stops the gateway at start rather than failing requests.
    """
    rule = http_rule(method)
    if rule is None:
        return []
    if method.client_streaming:
        raise TemplateError(f"{method.full_name}: client-streaming RPCs cannot be served over HTTP")
    rules = [rule, *rule.additional_bindings]
    out: list[Binding] = []
    for index, r in enumerate(rules):
        if index > 0 and r.additional_bindings:
            raise TemplateError(f"{method.full_name}: additional_bindings cannot nest")
        kind = r.WhichOneof("pattern")
        if kind is None:
            raise TemplateError(f"{method.full_name}: HttpRule #{index} has no pattern")
        if kind == "custom":
            verb, path = r.custom.kind.upper(), r.custom.path
        else:
            verb, path = kind.upper(), getattr(r, kind)
        try:
            template = PathTemplate.parse(path)
        except TemplateError as e:
            raise TemplateError(f"{method.full_name}: {e}") from None
        binding = Binding(method, verb, template, r.body, r.response_body, index)
        _check(binding)
        out.append(binding)
    return out


def _check(b: Binding) -> None:
    name = b.method.full_name
    req = b.method.input_type
    for var in b.template.variables:
        leaf = resolve_field_path(req, var.field_path)
        if leaf is None:
            raise TemplateError(f"{name}: path variable {'.'.join(var.field_path)} is no field")
        if leaf.is_repeated or (is_message(leaf) and message_name(leaf) not in SCALAR_WKT):
            raise TemplateError(f"{name}: path variable {'.'.join(var.field_path)} is not scalar")
    if b.body not in ("", "*") and req.fields_by_name.get(b.body) is None:
        raise TemplateError(f"{name}: body field {b.body!r} is no field of {req.full_name}")
    if b.response_body and b.method.output_type.fields_by_name.get(b.response_body) is None:
        raise TemplateError(f"{name}: response_body {b.response_body!r} is no field")


# Well-known message types whose JSON form is a single string/number/bool, so they can be set
# from a path segment or query parameter.
SCALAR_WKT = frozenset(
    {
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
        "google.protobuf.DoubleValue",
        "google.protobuf.FloatValue",
        "google.protobuf.Int64Value",
        "google.protobuf.UInt64Value",
        "google.protobuf.Int32Value",
        "google.protobuf.UInt32Value",
        "google.protobuf.BoolValue",
        "google.protobuf.StringValue",
        "google.protobuf.BytesValue",
    }
)


def is_message(f: FieldDescriptor) -> bool:
    """True for a field of message type (maps included)."""
    return bool(f.type == FieldDescriptor.TYPE_MESSAGE)


def message_of(f: FieldDescriptor) -> Descriptor:
    """The message type of a message field."""
    if f.message_type is None:
        raise TypeError(f"{f.full_name} is not a message field")
    return f.message_type


def message_name(f: FieldDescriptor) -> str:
    """The full name of a message field's type; "" for other fields."""
    return f.message_type.full_name if f.message_type is not None else ""


def is_map(f: FieldDescriptor) -> bool:
    """True for a map field (a repeated synthetic *Entry message)."""
    return f.message_type is not None and bool(f.message_type.GetOptions().map_entry)


def field_by_any_name(desc: Descriptor, name: str) -> FieldDescriptor | None:
    """The field called ``name`` by its proto name or its JSON (lowerCamel) name."""
    f = desc.fields_by_name.get(name)
    if f is not None:
        return f
    for candidate in desc.fields:
        if candidate.json_name == name:
            return candidate
    return None


def resolve_field_path(desc: Descriptor, path: Sequence[str]) -> FieldDescriptor | None:
    """The leaf field of a dotted path through singular message fields, or None."""
    current: Descriptor | None = desc
    leaf: FieldDescriptor | None = None
    for i, part in enumerate(path):
        if current is None:
            return None
        leaf = field_by_any_name(current, part)
        if leaf is None:
            return None
        if i < len(path) - 1:
            if not is_message(leaf) or leaf.is_repeated:
                return None
            current = message_of(leaf)
    return leaf


def bindings_for_files(files: Iterable[FileDescriptor]) -> list[Binding]:
    """Every binding of every annotated method of every service in ``files``, most specific
    template first. Raises TemplateError when two bindings claim the same verb and path."""
    out: list[Binding] = []
    for f in files:
        for service in f.services_by_name.values():
            for method in service.methods:
                out.extend(bindings_for_method(method))
    seen: dict[tuple[str, str], str] = {}
    for b in out:
        key = (b.http_method, b.template.regex.pattern)
        if key in seen:
            raise TemplateError(
                f"{b.http_method} {b.template.source} is bound by both {seen[key]} and "
                f"{b.method.full_name}"
            )
        seen[key] = b.method.full_name
    out.sort(key=Binding.sort_key)
    return out


@dataclass(frozen=True)
class Match:
    """A request matched to a binding, with the decoded path variables."""

    binding: Binding
    path_params: dict[tuple[str, ...], str]


class Router:
    """Finds the binding for an HTTP method and raw path."""

    def __init__(self, bindings: Sequence[Binding]) -> None:
        self.bindings = sorted(bindings, key=Binding.sort_key)

    def match(self, http_method: str, raw_path: str) -> Match | frozenset[str] | None:
        """The match; else the set of methods the path does allow (answer 405); else None.

        A path that matches a template with a custom verb (``/v1/jobs/1:cancel``) addresses
        that custom method only, even though ``/v1/jobs/{id}`` would also match it with
        ``id = "1:cancel"``: verb templates shadow verbless ones, so the 405's Allow list names
        the custom method's verbs alone.
        """
        candidates = [(b, p) for b in self.bindings if (p := b.template.match(raw_path)) is not None]
        if any(b.template.verb is not None for b, _ in candidates):
            candidates = [(b, p) for b, p in candidates if b.template.verb is not None]
        for b, params in candidates:
            if b.http_method == http_method:
                return Match(b, params)
        allowed = frozenset(b.http_method for b, _ in candidates)
        return allowed or None


def describe(bindings: Iterable[Binding]) -> list[dict[str, Any]]:
    """A plain summary of the routes, for logs and debugging."""
    return [
        {"method": b.http_method, "path": b.template.source, "rpc": b.method.full_name}
        for b in bindings
    ]
