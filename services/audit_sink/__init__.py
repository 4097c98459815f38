"""Audit sink."""
