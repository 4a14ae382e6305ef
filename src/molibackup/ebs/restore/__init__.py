"""Restore: choose a snapshot, make its volume once, and write the manifests a cluster needs."""
