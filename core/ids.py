"""Bounds of the ids clients may send."""

# The largest BigAutoField id (PostgreSQL bigint): a larger integer cannot name a row, and sent
# to the database it would be an error instead of a clean 400 or 404.
MAX_ID = 2**63 - 1
