"""The proto's comments, by element full name, from a descriptor set built with source info.

Generated ``*_pb2`` modules drop comments, so the build also writes
``clients/python/forge/v1/broker.binpb`` (``protoc --descriptor_set_out --include_source_info``)
next to them. Without that file the gateway still works; the OpenAPI document just has no
descriptions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from google.protobuf import descriptor_pb2

log = logging.getLogger("gateway")

# Field numbers in descriptor.proto used by SourceCodeInfo location paths.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MSG_FIELD, _MSG_NESTED, _MSG_ENUM = 2, 3, 4
_ENUM_VALUE = 2
_SERVICE_METHOD = 2


def load(paths: Iterable[Path]) -> dict[str, str]:
    """Leading (else trailing) comments of every message, field, enum, enum value, service and
    method in the descriptor sets, keyed by full name (enum values as ``Enum.VALUE``).

    Missing or unreadable files are logged and skipped.
    """
    out: dict[str, str] = {}
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as e:
            log.warning("no proto comments for OpenAPI (%s): %s", path, e)
            continue
        fds = descriptor_pb2.FileDescriptorSet()
        try:
            fds.ParseFromString(data)
        except Exception as e:  # any decode failure means "no comments", never "no gateway"
            log.warning("unreadable descriptor set %s: %s", path, e)
            continue
        for f in fds.file:
            out.update(_file_comments(f))
    return out


def _file_comments(f: descriptor_pb2.FileDescriptorProto) -> dict[str, str]:
    by_path: dict[tuple[int, ...], str] = {}
    for loc in f.source_code_info.location:
        text = loc.leading_comments or loc.trailing_comments
        if text.strip():
            by_path[tuple(loc.path)] = _tidy(text)
    names: dict[str, str] = {}
    prefix = f.package + "." if f.package else ""

    def put(name: str, path: tuple[int, ...]) -> None:
        if path in by_path:
            names[name] = by_path[path]

    def enum(e: descriptor_pb2.EnumDescriptorProto, name: str, path: tuple[int, ...]) -> None:
        put(name, path)
        for i, v in enumerate(e.value):
            put(f"{name}.{v.name}", (*path, _ENUM_VALUE, i))

    def message(m: descriptor_pb2.DescriptorProto, name: str, path: tuple[int, ...]) -> None:
        put(name, path)
        for i, fld in enumerate(m.field):
            put(f"{name}.{fld.name}", (*path, _MSG_FIELD, i))
        for i, nested in enumerate(m.nested_type):
            message(nested, f"{name}.{nested.name}", (*path, _MSG_NESTED, i))
        for i, e in enumerate(m.enum_type):
            enum(e, f"{name}.{e.name}", (*path, _MSG_ENUM, i))

    for i, m in enumerate(f.message_type):
        message(m, prefix + m.name, (_FILE_MESSAGE, i))
    for i, e in enumerate(f.enum_type):
        enum(e, prefix + e.name, (_FILE_ENUM, i))
    for i, s in enumerate(f.service):
        put(prefix + s.name, (_FILE_SERVICE, i))
        for j, meth in enumerate(s.method):
            put(f"{prefix}{s.name}.{meth.name}", (_FILE_SERVICE, i, _SERVICE_METHOD, j))
    return names


def _tidy(text: str) -> str:
    # protoc keeps the single space after "//" on each line; drop it and trailing blank lines.
    lines = [line[1:] if line.startswith(" ") else line for line in text.splitlines()]
    return "\n".join(lines).strip()
