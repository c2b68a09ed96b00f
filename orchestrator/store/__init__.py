"""The store layer: one way to reach the rollout journal, the watch journal and the alert
store, on SQLite (embedded default, one host) or PostgreSQL (CI fleets, an HA watch).

url: which backend a `--journal` value names. db: connections, write transactions,
the database's clock. migrate: schema versions per component. lease: the pure lease
decision (holder identity, expiry, fencing token). leases: named leases and
idempotency keys in the database (the watch's leader lease and its actions).
"""
