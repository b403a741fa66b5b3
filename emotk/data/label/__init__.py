"""Sentiment pseudo-labels for transcripts from an LLM (METHODS.md §2): the data-annotation tool behind
``emotk data label``.

The thesis prompts GPT-3.5 Turbo (or Mixtral-8x7B) with :data:`THESIS_PROMPT` for every Whisper transcript of
MSP-Podcast and keeps the answer as a 3-class pseudo-label (negative / neutral / positive), the training target
of ``emotk pretrain text`` (:mod:`emotk.models.text`).

* :mod:`.backends` — the pluggable labellers (a local Hugging Face causal LM, an OpenAI-compatible endpoint, a
  file of labels made elsewhere) and :func:`~.backends.normalize_answer`, which maps free-form answers onto the
  three classes (None for anything else: counted as unparseable and kept raw, never fatal);
* :mod:`.run` — :func:`~.run.label_manifest`: a labeller over a manifest, with a resumable journal
  (:class:`emotk.core.journal.Journal`; ``--resume`` never asks twice for a finished item), an on-disk response
  cache keyed by ``sha256(model + prompt + text)``, ``--shard i/N`` and an atomic final write.
"""

from __future__ import annotations

SENTIMENT_CLASSES = ("negative", "neutral", "positive")
THESIS_PROMPT = (
    "You are a sentiment classification bot. Given the [sentence], classify as positive, negative or neutral "
    "sentiment. Please give the sentiment and no extra text as output."
)
LABEL_FIELD = "sentiment_llm"  # the pseudo-label a labelled manifest carries
RAW_FIELD = "sentiment_llm_raw"  # the answer as given
ERROR_FIELD = "sentiment_llm_error"  # why an item got no answer
