"""Forge's Python client: ``Client`` (blocking) and ``AsyncClient`` (asyncio) for the broker's API."""

from forge.client import AsyncClient, Client, ForgeClientError, wait_ready
from forge.security import ChannelSecurity, SecurityConfigError

__all__ = ["AsyncClient", "ChannelSecurity", "Client", "ForgeClientError", "SecurityConfigError",
           "wait_ready"]
