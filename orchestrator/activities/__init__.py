"""Thin Temporal activities: one side effect each, idempotent, heartbeating while they wait."""
