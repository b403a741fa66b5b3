"""Shared neural building blocks, one implementation each, used by every task.

* :mod:`emotk.nn.masks` -- lengths <-> padding masks, padding of variable-length sequences, dialogue attention masks
* :mod:`emotk.nn.attention` -- the masked multi-head attention block O = LayerNorm(Q + softmax(QKᵀ/√d)V)
* :mod:`emotk.nn.hcam` -- HCAM's stage I heads, stage II context (thesis / reference), stage III co-attention
* :mod:`emotk.nn.pooling` -- masked mean pooling, attentive statistics pooling
* :mod:`emotk.nn.layer_sum` -- learnable softmax-weighted sum of upstream layers (SUPERB)
* :mod:`emotk.nn.heads` -- MLP classification / regression heads
* :mod:`emotk.nn.grl` -- gradient reversal with its coefficient schedule

Importing this package is cheap; each module imports torch itself.
"""
