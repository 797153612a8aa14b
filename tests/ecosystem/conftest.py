"""Fixtures of the ecosystem tests: Prometheus over known history, and an empty one."""

from tests.ecosystem.prom_history import empty_prometheus, history

__all__ = ["empty_prometheus", "history"]
