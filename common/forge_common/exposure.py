"""Whether a service may listen where it is told to: beyond loopback only with API tokens set.

The broker checks its own ``FORGE_HOST``; the gateway checks ``--host`` against the broker's
token variables (it forwards tokens, the broker checks them), so both refuse the same thing.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping

# The broker's token variables; other services only ask whether they are set (safe default).
ENV_TOKENS = "FORGE_TOKENS"
ENV_TOKENS_FILE = "FORGE_TOKENS_FILE"


def is_loopback(host: str) -> bool:
    """Whether a listen address only accepts connections from this machine.

    ``localhost``, ``127.0.0.0/8`` and ``::1`` are; ``0.0.0.0``, ``::``, a host name or any
    other address is not (a name could resolve anywhere)."""
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def tokens_configured(env: Mapping[str, str] | None = None) -> bool:
    """Whether the broker's API tokens are configured (``FORGE_TOKENS`` or ``FORGE_TOKENS_FILE``
    non-empty). Only the broker parses and checks them."""
    e = os.environ if env is None else env
    return bool((e.get(ENV_TOKENS) or "").strip() or (e.get(ENV_TOKENS_FILE) or "").strip())


def exposure_problem(host: str, option: str, env: Mapping[str, str] | None = None) -> str | None:
    """Why listening on ``host`` is refused (no tokens, not loopback), or None when it is fine."""
    if is_loopback(host) or tokens_configured(env):
        return None
    return (f"{option} {host}: refusing to listen beyond loopback with no API tokens "
            f"configured; set {ENV_TOKENS} or {ENV_TOKENS_FILE} (see docs/operations.md, "
            f"\"Security\"), or listen on 127.0.0.1")
