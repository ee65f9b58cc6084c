"""Raw KuaiRec data: the offline simulator, the download, cleaning, labels and the leakage-free split.

See docs/design/data.md.
"""
