"""Whether a service may listen where it is told to: beyond loopback only with API tokens set.

The broker checks its own ``FORGE_HOST``; the gateway checks ``--host`` against the broker's
token variables (it forwards tokens, the broker checks them), so both refuse the same thing.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping

from forge_common.tokens import ENV_TOKENS, ENV_TOKENS_FILE, parse_tokens


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
    """Whether ``FORGE_TOKENS`` or ``FORGE_TOKENS_FILE`` configure at least one usable token;
    TokenConfigError when they are set but unusable (a blank entry, a placeholder)."""
    return bool(parse_tokens(os.environ if env is None else env))


def exposure_problem(host: str, option: str, env: Mapping[str, str] | None = None) -> str | None:
    """Why listening on ``host`` is refused (no tokens, not loopback), or None when it is fine.
    The token variables are checked whatever the host (TokenConfigError), so a service never
    starts on a token list the broker would refuse."""
    if tokens_configured(env) or is_loopback(host):
        return None
    return (f"{option} {host}: refusing to listen beyond loopback with no API tokens "
            f"configured; set {ENV_TOKENS} or {ENV_TOKENS_FILE} (see docs/operations.md, "
            f"\"Security\"), or listen on 127.0.0.1")
