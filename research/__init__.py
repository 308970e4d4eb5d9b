"""Experiments beside the toolkit: cross-validation, separation searches and checks, baselines, and the
targets, losses and networks that were measured and not adopted (docs/results.md). Not installed: run its
commands from the repository root (``python -m research.cv ...``)."""
