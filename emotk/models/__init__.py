"""Task models, one sub-package per family (METHODS.md): ``ser`` (SUPERB downstream, VAD regression), and later
``care``, ``text``, ``erc``, ``zest``. Each builds on :mod:`emotk.nn`, :mod:`emotk.losses`, :mod:`emotk.metrics`
and the training loop of :mod:`emotk.train`; nothing in ``emotk.core`` imports from here.
"""
