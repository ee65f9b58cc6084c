"""Offline evaluation: ranking metrics, uncertainty, oracles, segments, beyond-accuracy, report and model card.

Top-K selection and ranking metrics (``metrics``), bootstrap intervals and paired comparisons
(``uncertainty``, ``paired``), beyond-accuracy metrics (``beyond_accuracy``), per-segment metrics
(``segments``), the simulator's oracles (``oracle``), one block's evaluation (``pipeline``, the
``evaluate@<block>`` stage), the merged report and model card (``report``, ``model_card``, the ``report``
stage) and their file layout (``layout``). See docs/design/evaluation.md.
"""
