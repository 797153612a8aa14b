"""Tests of the sandbox cluster."""
