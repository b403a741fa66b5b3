"""LLM-supervised text emotion pre-training (METHODS.md §2): ``emotk pretrain text``.

* :mod:`.config` — ``TextPretrainConfig``, the schema of task ``pretrain.text``
* :mod:`.model` — :class:`~.model.TextSentimentModel`: HF encoder + masked mean pooling + linear head
* :mod:`.task` — :class:`~.task.TextPretrainTask` (the trainer hooks) and :func:`~.task.train`
* :mod:`.export` — the export: a Hugging Face folder usable by :class:`emotk.features.text.TextEncoder`, plus
  the head (:func:`~.export.write_export` / :func:`~.export.load_export`)
* :mod:`.infer` — :class:`~.infer.TextClassifier`: sentiment predictions and sentence embeddings for texts

The labels come from ``emotk data label`` (:mod:`emotk.data.label`). Importing this package is cheap;
torch/transformers load inside the modules that need them.
"""
