"""Benchmarks: ``python -m companion.benchmarks.<name>`` prints timings and ratios
against the best existing implementation measured in the same run."""
