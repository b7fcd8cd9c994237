"""``forge migrate``: the ``forge`` CLI's command that the broker's distribution adds.

The client's CLI carries no server code; it runs the commands that installed distributions
register under the ``forge.commands`` entry-point group (see ``forge.cli.Command``). This one
needs the database, so it lives here, and only imports the broker when it runs.
"""

from __future__ import annotations

import argparse
import json


class Migrate:
    """Apply database migrations (DATABASE_URL, or the embedded PostgreSQL in ./.forge)."""

    help = "apply database migrations (DATABASE_URL or embedded)"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """No options: the target comes from the broker's own configuration."""

    def run(self, args: argparse.Namespace) -> int:
        import logging

        from forge_broker.config import Config
        from forge_broker.embedded import start_embedded
        from forge_broker.migrate import latest_version, migrate

        logging.basicConfig(level=logging.INFO, format="%(message)s")
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        cfg = Config.from_env()
        dsn = cfg.database_direct_url or cfg.database_url or start_embedded(cfg.data_dir)
        applied = migrate(dsn)
        print(json.dumps({"applied": applied, "version": latest_version()}))
        return 0


migrate = Migrate()
