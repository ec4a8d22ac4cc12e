"""Bounds of the beat's options, importable without Redis (the CLI's option parsing
needs them in every command; :mod:`beat.lease` itself imports redis-py)."""

from __future__ import annotations

#: Lease TTLs a beat accepts, in seconds: shorter ones cannot be renewed in time over a
#: real network; longer ones mean an hour without ticks after a leader dies.
LEASE_TTL_RANGE = (1.0, 3600.0)
