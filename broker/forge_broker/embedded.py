"""The embedded PostgreSQL default: used when DATABASE_URL is unset."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("forge.embedded")


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the PostgreSQL server whose data lives in ``data_dir/pgdata``.

    The data is kept across restarts. The server is shared with other processes using the
    same folder and stops when the last of them exits. Returns a DSN for it.
    """
    import pgserver  # imported here: only the embedded default needs it

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(  # type: ignore[attr-defined]
        data_dir.resolve() / "pgdata", cleanup_mode="stop")
    dsn: str = server.get_uri()
    log.info("embedded PostgreSQL at %s (data in %s)", dsn, data_dir.resolve() / "pgdata")
    return dsn
