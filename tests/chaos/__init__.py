"""Forge's chaos suite: a real stack drains a queue while workers, brokers and PostgreSQL fail.

``python -m tests.chaos`` (``make chaos``) runs it at full size; ``tests/test_chaos.py`` runs the same
code small. See ``chaos.run`` for what happens and ``chaos.checks`` for what must hold.
"""
