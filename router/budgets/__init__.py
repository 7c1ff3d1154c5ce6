"""USD budgets per key, per user and per tier, per UTC day and month, held at admission and settled with the
actual cost of each request (in the process, or in Redis for every replica together)."""
