"""Models: implicit ALS candidate generation, baselines, ranker features and the LightGBM ranker.

See docs/design/models.md.
"""
