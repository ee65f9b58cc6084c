"""Raw KuaiRec data: the offline simulator and the loaders that read its files."""
