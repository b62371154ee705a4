"""Tests of the worker's loops."""
