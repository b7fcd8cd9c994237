"""Forge's Python client: ``Client`` (blocking) and ``AsyncClient`` (asyncio) for the broker's API."""

from forge.client import AsyncClient, Client, ForgeClientError, wait_ready

__all__ = ["AsyncClient", "Client", "ForgeClientError", "wait_ready"]
