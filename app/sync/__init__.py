"""Clinic sync: the outbox of changes that feeds the change feed, exports and webhooks."""
