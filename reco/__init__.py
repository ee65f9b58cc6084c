"""reco: the importable package behind the KuaiRec two-stage recommender pipeline.

Layers import downwards only: ``schema``/``errors``/``io`` <- ``data`` <- ``models`` <- ``evaluation``.
Stage scripts in ``stages/`` are thin wrappers around these modules.
"""

__version__ = "0.1.0"
