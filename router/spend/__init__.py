"""The spend ledger: every request's actual cost, strong-only cost and savings per key and user, persisted in
SQLite (embedded) or PostgreSQL (shared), read by `GET /v1/usage`, `cascadeflow usage` and the budgets."""
