"""A real PostgreSQL 16 server for the tests, from the ``pgserver`` wheel (no system
install): one per pytest worker, a fresh database per test."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pgserver
import psycopg


class PostgresForTests:
    def __init__(self, folder: Path) -> None:
        # The server listens on a Unix socket in ``folder`` only: nothing else can reach it.
        self._server = pgserver.get_server(folder, cleanup_mode="stop")
        self.admin_url = self._server.get_uri()

    def new_database(self) -> str:
        """The URL of a new, empty database."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return re.sub(r"/postgres\?", f"/{name}?", self.admin_url, count=1)

    def stop(self) -> None:
        self._server.cleanup()
