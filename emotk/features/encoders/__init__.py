"""emotk's own implementations of pretrained speech encoders (module-level ``nn.Module`` classes).

Each module is the network and its config only; reading and writing the upstream checkpoints is
:mod:`emotk.hub`'s job (``emotk.hub.emotion2vec``, ``emotk.hub.soft_hubert``). Importing a module here imports
torch; this package itself imports nothing.
"""
