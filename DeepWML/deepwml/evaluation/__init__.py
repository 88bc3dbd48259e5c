"""Evaluation: per-slice and per-volume metrics, statistics, consensus and reports."""
