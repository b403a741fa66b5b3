"""S2S-ZEST textless emotion style transfer (METHODS.md section 6).

Task package shape (docs/EXTENDING.md): ``config`` (ZestConfig), ``data`` (corpus preparation: tokens, F0,
x-vectors), ``model`` (AnalysisModel and the stage builders; building blocks ``speaker``, ``emotion``,
``f0_predictor``, ``duration``), ``task`` (the speaker / analysis TrainTasks and :func:`~.task.train`),
``export`` (the inference bundle) and ``infer`` (conversion, batch transfer, the evaluation system protocol).
The BigVGAN vocoder is the sub-package ``vocoder/`` of the same shape; the WORLD backend is DSP
(:mod:`emotk.features.world_synth`); ``augment`` is emotion-transfer augmentation for SER.
"""
