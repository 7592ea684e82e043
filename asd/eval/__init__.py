"""Evaluation: task metrics, statistics (CIs, significance tests)."""
