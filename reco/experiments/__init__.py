"""Experiments around the pipeline: choosing settings on validation, and the seed spread of the models.

See docs/selection-and-review.md and docs/design/experiments.md.
"""
