"""Serving decisions: the quality gate, the control topic, pins and rollbacks."""
