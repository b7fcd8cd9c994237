"""Forge's benchmark harness (``make bench``)."""
