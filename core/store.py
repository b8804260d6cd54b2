"""Where the app and the CLI get their database: the file named by ``--db`` / ``SYNTHLOOP_DB`` or the default."""

from __future__ import annotations

from db.connection import DatabasePathError, db_file, files_dir, open_db, resolve_db_path

__all__ = ["DatabasePathError", "db_file", "files_dir", "open_db", "resolve_db_path"]
