"""Measurements of edits: colour accuracy, five-way accuracy, disentanglement, latency."""
