"""Experiments around the pipeline: choosing settings on validation, and the seed spread of the models."""
