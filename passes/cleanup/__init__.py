"""Cleanup passes: dead code, no-op elimination, deduplication, common subexpressions."""
