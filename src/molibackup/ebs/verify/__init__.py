"""Verify: prove a snapshot holds what was written, by its blocks or by a volume made of it."""
