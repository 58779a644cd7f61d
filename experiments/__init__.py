"""Experiments: research drivers that train, refine and evaluate, and print what they find."""
