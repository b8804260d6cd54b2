"""The only package that speaks SQL: connection, migrations and one repository module per concept."""

from db.connection import connect, now, open_db, resolve_db_path, transaction

__all__ = ["connect", "now", "open_db", "resolve_db_path", "transaction"]
