"""CARE — Content and Acoustic Representations of Emotions (METHODS.md §1, thesis 3.1).

* :mod:`.config` — ``CareConfig``, the schema of task ``pretrain.care`` (configs/pretrain/care*.yaml)
* :mod:`.model` — :class:`CareModel`: speech trunk (CNN + projection + positional conv + common encoder),
  acoustic encoder + frame regressor, frozen semantic (text) encoder wrapped in down/up conv adapters
* :mod:`.task` — :class:`CareTask` (the trainer hooks) and :func:`~.task.train` (``emotk pretrain care``)
* :mod:`.export` — the export bundle: :func:`~.export.write_export` / :func:`~.export.load_export`
* :mod:`.infer` — :class:`CareEncoder` (13 SUPERB layer views) + the ``care:RUN_OR_EXPORT`` upstream name
  (CARE's inference: a layered speech encoder for SUPERB SER)
"""
