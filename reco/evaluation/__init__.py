"""Offline evaluation: top-K selection and ranking metrics (precision, recall, NDCG, MAP, hit rate, coverage),
bootstrap intervals and paired comparisons (``uncertainty``), beyond-accuracy metrics (``beyond_accuracy``),
per-segment metrics (``segments``) and the model card (``model_card``)."""
