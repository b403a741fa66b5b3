"""Task ``erc.hcam``: HCAM emotion recognition in conversations (thesis §4.1.2, METHODS.md §3).

* :mod:`.config` -- the schema (configs/erc/*.yaml); :mod:`.embed` -- stage-I vectors from the feature cache;
* :mod:`.model` -- :class:`~.model.ErcNet`, the stage network (layers in :mod:`emotk.nn.hcam`);
* :mod:`.task` -- the TrainTask and ``emotk erc train``; :mod:`.export` -- the inference bundle;
* :mod:`.infer` -- ``emotk erc predict`` (whole dialogues, or turn by turn online);
* :mod:`.finetune` -- HCAM's fine-tuned stage I (``embed.<m>.finetune``: encoder + utterance head).
"""
