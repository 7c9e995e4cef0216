"""Graphs built from interactions or features: normalised adjacencies, kNN item graphs."""
