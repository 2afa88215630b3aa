"""Builders shared by test files in several folders (``pythonpath = ["tests"]`` in pyproject).

Fixtures stay in the ``conftest.py`` of their folder; this package holds plain functions that
module-level helpers of different test files call.
"""
