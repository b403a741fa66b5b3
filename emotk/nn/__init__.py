"""Shared neural building blocks, one implementation each, used by every task.

* :mod:`emotk.nn.masks` -- lengths <-> padding masks, padding of variable-length sequences
* :mod:`emotk.nn.pooling` -- masked mean pooling, attentive statistics pooling
* :mod:`emotk.nn.layer_sum` -- learnable softmax-weighted sum of upstream layers (SUPERB)
* :mod:`emotk.nn.heads` -- MLP classification / regression heads
* :mod:`emotk.nn.grl` -- gradient reversal with its coefficient schedule

Importing this package is cheap; each module imports torch itself.
"""
