"""Proxy keys made at run time (SQLite, PostgreSQL or Redis, as SHA-256 digests only) and rate limits per key,
per user and per tier (in the process, or in Redis for every replica together)."""
