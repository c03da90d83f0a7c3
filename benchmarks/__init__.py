"""Benchmarks and studies: command lines (``python benchmarks/<name>.py``) and what they share."""
