"""Forge's Python client: ``Client`` (blocking) and ``AsyncClient`` (asyncio) for the broker's API."""

from forge.client import AsyncClient, Client, ForgeClientError, wait_ready
from forge.security import ChannelSecurity, SecurityConfigError
from forge.stream import EnqueueStream

__all__ = ["AsyncClient", "ChannelSecurity", "Client", "EnqueueStream", "ForgeClientError",
           "SecurityConfigError", "wait_ready"]
