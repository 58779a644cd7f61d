"""Judging a run as the paper does: task estimators, metrics, the realism score, the
evaluation library and the visual Turing test."""
