"""Benchmarks: speed and memory figures of simgan-tf, printed, not asserted."""
