"""Webhooks: the push form of the change feed and of clinical alerts, signed per the
Standard Webhooks specification and delivered at least once by the worker."""
