"""Checkpoint files: atomic writes, safe loads, manifests, and consolidation from scratch to shared storage."""
