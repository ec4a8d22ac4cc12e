"""Operator actions shared by the CLI and the dashboard: the context they run in (profile,
job table, Redis, run history) and what they do to runs (enqueue, backfill, cancel, rerun).

Both front ends import this package; it imports neither of them.
"""
