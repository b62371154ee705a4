"""Adherence: what the patient actually did, recorded offline and uploaded in batches."""
