"""Writes the blocking ``forge.client.Client`` from ``AsyncClient``, so each call is written once.

    python scripts/sync_client.py          rewrite the generated end of clients/python/forge/client.py
    python scripts/sync_client.py --check  exit 1 if it is not what the generator would write

The rewrite works on tokens, not on the syntax tree, so the generated class keeps the source's
layout, comments and docstrings: ``async`` and ``await`` are dropped and the few asyncio names
are swapped for their blocking twins. Write AsyncClient's multi-line signatures with a hanging
indent, so that dropping ``async`` leaves the continuation lines aligned.
"""

from __future__ import annotations

import ast
import io
import itertools
import sys
import tokenize
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[1] / "clients" / "python" / "forge" / "client.py"
MARK = ("# --- Generated from AsyncClient by scripts/sync_client.py: edit AsyncClient, then run it. "
        "---\n")
DROPPED = {"async", "await"}
RENAMED = {
    "AsyncClient": "Client",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "aio_channel": "channel",
    "_AsyncUnary": "_Unary",
}
# Where the two differ by more than a name: the class docstring, and grpc.aio's close(grace).
REPLACED = {
    '"""asyncio client with the same methods as ``Client``, each a coroutine."""':
        '"""Blocking client. Use as a context manager, or call ``close()``."""',
    "self._channel.close(None)": "self._channel.close()",
}


def blocking(source: str) -> str:
    """``source`` (one class) changed as DROPPED, RENAMED and REPLACED say; SystemExit when one
    of them no longer occurs, since then AsyncClient changed in a way the generator misses."""
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
        raise SystemExit(f"scripts/sync_client.py: no longer in AsyncClient: {missing}")
    for begin, end, text in reversed(edits):
        source = source[:begin] + text + source[end:]
    return source


def render(text: str) -> str:
    """client.py as it should be: everything up to MARK as written, then Client from AsyncClient."""
    head = text.split(MARK)[0].rstrip("\n") + "\n"
    [cls] = [node for node in ast.parse(head).body
             if isinstance(node, ast.ClassDef) and node.name == "AsyncClient"]
    lines = head.splitlines(keepends=True)[cls.lineno - 1:cls.end_lineno]
    return f"{head}\n\n{MARK}\n\n{blocking(''.join(lines))}"


def main(argv: list[str]) -> int:
    text = CLIENT.read_text()
    wanted = render(text)
    if "--check" in argv:
        if text != wanted:
            print(f"{CLIENT} is stale: run python scripts/sync_client.py", file=sys.stderr)
            return 1
        return 0
    CLIENT.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
