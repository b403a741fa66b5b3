"""Speech emotion recognition (METHODS.md §1 downstream, §0 datasets).

* :mod:`.config` -- ``SerConfig`` (task ``ser.superb``): data, upstream, model, train, loss sections
* :mod:`.data` -- manifest -> (10 s segments) -> labels (label maps) -> protocol splits
* :mod:`.features` -- frozen-upstream (or ``lld``) features extracted once per utterance into the feature cache
* :mod:`.superb` -- the SUPERB downstream: softmax layer sum -> masked pooling -> MLP head
* :mod:`.task` -- the TrainTask (datasets from the cache, collate, steps, metrics)
* :mod:`.pipeline` -- ``ser train`` (folds x seeds, test reports, summary) and ``ser evaluate``
* :mod:`.infer` -- the ``export/`` inference bundle and ``ser predict``

Importing this package is cheap; torch is imported by the submodules that need it.
"""
