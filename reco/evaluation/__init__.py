"""Offline evaluation: top-K selection and ranking metrics (precision, recall, NDCG, MAP, hit rate, coverage)."""
