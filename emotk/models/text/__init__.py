"""LLM-supervised text emotion pre-training (METHODS.md §2).

* :mod:`emotk.models.text.labeller` — ``emotk data label``: sentiment pseudo-labels from a local causal LM, an
  OpenAI-compatible endpoint or a file of labels (``label_manifest``).
* :mod:`emotk.models.text.pretrain` — ``emotk pretrain text``: fine-tune a text encoder on those labels and
  export it as a Hugging Face folder usable by :class:`emotk.features.text.TextEncoder`.

Importing this package is cheap; torch/transformers load inside the functions that need them.
"""
