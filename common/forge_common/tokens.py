"""The API token variables, ``FORGE_TOKENS`` and ``FORGE_TOKENS_FILE``, read in one place, and
the check of a presented token against them.

The broker enforces the tokens and their roles; the gateway checks only that a request carries
one of them (so a stranger's body is never read), and must know whether auth is on before it
listens beyond loopback. Both read them here, so a list the broker would refuse (a blank entry, a
short token, a placeholder from ``deploy/secret.yaml``) stops the gateway too instead of counting
as "configured". Messages name the variable, the entry's position and its name, never the token
(nor a field that might be one, such as a role written in its place).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

ENV_TOKENS = "FORGE_TOKENS"
ENV_TOKENS_FILE = "FORGE_TOKENS_FILE"

ROLES = ("producer", "worker", "admin")
MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 4096
# deploy/secret.yaml's placeholders all say this; a token that does was never replaced.
PLACEHOLDER_MARK = "change-me"
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class TokenConfigError(ValueError):
    """A token variable is set but unusable. ``var`` names it."""

    def __init__(self, var: str, problem: str) -> None:
        super().__init__(f"{var}: {problem}")
        self.var = var
        self.problem = problem


@dataclass(frozen=True)
class TokenEntry:
    """One configured token, and where it was configured (``FORGE_TOKENS entry 2``)."""

    where: str
    name: str
    role: str
    token: str = field(repr=False)


def parse_tokens(env: Mapping[str, str]) -> tuple[TokenEntry, ...]:
    """The entries of ``FORGE_TOKENS`` (``name:role:token,...``) and ``FORGE_TOKENS_FILE`` (one
    ``name role token`` per line, ``#`` comments). A variable that is unset or blank adds none;
    one that is set but holds a bad entry, or no entry at all, raises TokenConfigError."""
    entries: list[TokenEntry] = []
    if (env.get(ENV_TOKENS) or "").strip():
        entries += _from_list(env[ENV_TOKENS])
    if (env.get(ENV_TOKENS_FILE) or "").strip():
        entries += _from_file(env[ENV_TOKENS_FILE].strip())
    _check_unique(entries)
    return tuple(entries)


def _entry(var: str, where: str, name: str, role: str, token: str) -> TokenEntry:
    if not _NAME.match(name):
        raise TokenConfigError(var, f"{where}: the name must be 1 to 64 characters of "
                                    "[A-Za-z0-9_.@-]")
    if role not in ROLES:
        raise TokenConfigError(var, f"{where} ({name}): the role must be one of "
                                    f"{', '.join(ROLES)}")
    if not MIN_TOKEN_CHARS <= len(token) <= MAX_TOKEN_CHARS:
        raise TokenConfigError(var, f"{where} ({name}): the token must be {MIN_TOKEN_CHARS} to "
                                    f"{MAX_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)")
    if not all(0x21 <= ord(c) <= 0x7E for c in token):
        raise TokenConfigError(var, f"{where} ({name}): the token must be printable ASCII "
                                    "without spaces")
    if PLACEHOLDER_MARK in token.lower():
        raise TokenConfigError(var, f"{where} ({name}): the token is a placeholder; replace it "
                                    "with a long random string (e.g. `openssl rand -hex 32`)")
    return TokenEntry(f"{var} {where}", name, role, token)


def _from_list(raw: str) -> list[TokenEntry]:
    out = []
    for i, item in enumerate(raw.split(","), 1):
        item = item.strip()
        if not item:
            raise TokenConfigError(ENV_TOKENS, f"entry {i}: is empty (a stray comma?)")
        parts = item.split(":", 2)
        if len(parts) != 3:
            raise TokenConfigError(ENV_TOKENS, f"entry {i}: must be name:role:token")
        name, role, token = (p.strip() for p in parts)
        out.append(_entry(ENV_TOKENS, f"entry {i}", name, role, token))
    return out


def _from_file(path: str) -> list[TokenEntry]:
    var = ENV_TOKENS_FILE
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenConfigError(var, f"cannot read {path}: "
                                    f"{getattr(exc, 'strerror', None) or exc}") from None
    out = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3:
            raise TokenConfigError(var, f"line {n}: must be `name role token`")
        name, role, token = parts
        out.append(_entry(var, f"line {n}", name, role, token))
    if not out:
        raise TokenConfigError(var, f"{path} holds no token (only blank lines and comments)")
    return out


def _check_unique(entries: list[TokenEntry]) -> None:
    names: dict[str, str] = {}
    tokens: dict[str, str] = {}
    for e in entries:
        var = e.where.split()[0]
        if e.name in names:
            raise TokenConfigError(var, f"{e.where}: the name {e.name} is already used by "
                                        f"{names[e.name]}")
        if e.token in tokens:
            raise TokenConfigError(var, f"{e.where} ({e.name}): the same token as "
                                        f"{tokens[e.token]}; give each token one role")
        names[e.name] = e.where
        tokens[e.token] = e.where


# -- checking a presented token ------------------------------------------------------------------

def digest(token: str) -> bytes:
    """The SHA-256 of a token: what a service keeps instead of the token itself."""
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


def bearer_credential(value: str | bytes | None) -> str | None:
    """The credential of an ``authorization`` value ``Bearer <credential>`` (the scheme in any
    case), or None for anything else."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    scheme, _, credential = text.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        return None
    return credential


def matching_digest(digests: Sequence[bytes], credential: str | None) -> int | None:
    """The index of the digest ``credential`` matches, or None. Compares against every digest,
    always, in constant time for each: how long it takes does not say which matched."""
    if credential is None:
        return None
    presented = digest(credential)
    found = None
    for i, known in enumerate(digests):
        if hmac.compare_digest(known, presented):
            found = i
    return found
