"""Speech emotion recognition (METHODS.md §1 downstream, §0 datasets).

* :mod:`.config` -- ``SerConfig`` (task ``ser.superb``): data, upstream, model, train, loss sections
* :mod:`.data` -- manifest -> (10 s segments) -> labels (label maps) -> protocol splits
* :mod:`.features` -- frozen-upstream (or ``lld``) features extracted once per utterance into the feature cache
* :mod:`.model` -- the SUPERB downstream: softmax layer sum -> masked pooling -> MLP head
* :mod:`.task` -- the TrainTask (datasets from the cache, collate, steps, metrics) and :func:`~.task.train`
  (``ser train``: folds x seeds, test reports, summary)
* :mod:`.evaluate` -- ``ser evaluate``: score the runs of a finished ``ser train`` folder again
* :mod:`.export` -- the ``export/`` inference bundle (write / load)
* :mod:`.infer` -- ``ser predict`` with an export bundle

Importing this package is cheap; torch is imported by the submodules that need it.
"""
