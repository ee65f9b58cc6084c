"""reco: the importable package behind the KuaiRec two-stage recommender pipeline.

Modules import downwards only (foundations such as ``schema``, ``errors``, ``io`` and ``params`` <- ``data``
<- ``models`` <- ``evaluation`` <- ``experiments``), never in a circle and never from ``stages/``, whose
scripts are thin wrappers around this package. See docs/design/core.md.
"""

__version__ = "0.1.0"
