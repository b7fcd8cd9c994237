"""Writes ``forge/_sync.py``, the blocking ``forge.Client``, from ``forge/client.py``'s
``AsyncClient``, so each call is written once.

    python clients/python/sync_client.py     (make setup and the package build run it)

The output is built, never committed, like the forge.v1 stubs. The rewrite works on tokens, not
on the syntax tree, so the generated class keeps the source's layout, comments and docstrings:
``async`` and ``await`` are dropped and the few asyncio names are swapped for their blocking
twins. Write AsyncClient's multi-line signatures with a hanging indent, so that dropping
``async`` leaves the continuation lines aligned.
"""

from __future__ import annotations

import ast
import io
import itertools
import sys
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent / "forge"
SOURCE = PACKAGE / "client.py"
TARGET = PACKAGE / "_sync.py"
HEADER = ('"""The blocking client, ``forge.Client``. Generated from ``forge/client.py``\'s '
          '``AsyncClient``\nby ``clients/python/sync_client.py``: edit AsyncClient, not this '
          'file."""\n')
DROPPED = {"async", "await"}
RENAMED = {
    "AsyncClient": "Client",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "aio_channel": "channel",
    "AsyncUnary": "Unary",
}
# Where the two differ by more than a name: the class docstring, and grpc.aio's close(grace).
REPLACED = {
    '"""asyncio client with the same methods as ``Client``, each a coroutine."""':
        '"""Blocking client. Use as a context manager, or call ``close()``."""',
    "self._channel.close(None)": "self._channel.close()",
}


def blocking(source: str) -> str:
    """``source`` changed as DROPPED, RENAMED and REPLACED say; SystemExit when one of them no
    longer occurs, since then AsyncClient changed in a way the generator misses."""
    missing = [old for old in REPLACED if old not in source]
    for old, new in REPLACED.items():
        source = source.replace(old, new)
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    edits: list[tuple[int, int, str]] = []
    for tok, following in itertools.pairwise(tokens):
        begin = starts[tok.start[0] - 1] + tok.start[1]
        if tok.type == tokenize.NAME and tok.string in DROPPED:
            edits.append((begin, starts[following.start[0] - 1] + following.start[1], ""))
        elif tok.type == tokenize.NAME and tok.string in RENAMED:
            edits.append((begin, begin + len(tok.string), RENAMED[tok.string]))
    missing += sorted(set(RENAMED) - {tok.string for tok in tokens})
    if missing:
        raise SystemExit(f"sync_client.py: no longer in AsyncClient: {missing}")
    for begin, end, text in reversed(edits):
        source = source[:begin] + text + source[end:]
    return source


def render(text: str) -> str:
    """``_sync.py``: client.py's imports, then Client made from AsyncClient."""
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)
               and getattr(node, "module", None) != "forge._sync"]
    [cls] = [node for node in tree.body
             if isinstance(node, ast.ClassDef) and node.name == "AsyncClient"]
    head = "".join(lines[imports[0].lineno - 1:imports[-1].end_lineno])
    body = "".join(lines[cls.lineno - 1:cls.end_lineno])
    return blocking(f"{HEADER}\n{head}\n\n{body}")


def main() -> int:
    wanted = render(SOURCE.read_text(encoding="utf-8"))
    if not TARGET.exists() or TARGET.read_text(encoding="utf-8") != wanted:
        TARGET.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
