"""Offline evaluation: top-K selection and ranking metrics (precision, recall, NDCG, MAP, hit rate, coverage),
bootstrap intervals and paired comparisons (``uncertainty``), beyond-accuracy metrics (``beyond_accuracy``),
per-segment metrics (``segments``), the simulator's oracles (``oracle``), one block's evaluation
(``pipeline``, the ``evaluate@<block>`` stage), the merged report and model card (``report``,
``model_card``, the ``report`` stage) and their file layout (``layout``)."""
