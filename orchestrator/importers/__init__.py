"""Converters from other tools' analysis definitions into this project's checks, one module per tool."""
