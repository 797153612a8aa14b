"""Alembic migrations of the run store (SQLite and PostgreSQL); run by ``orchestrator.scoring.store.migrate``."""
