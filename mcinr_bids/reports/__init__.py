"""Participant and group reports."""
