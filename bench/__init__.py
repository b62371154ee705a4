"""Benchmarks that compare Dorsi with a reference measured in the same run."""
