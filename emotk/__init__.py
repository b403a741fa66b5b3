"""emotk: a toolkit for emotion in spoken language.

The import is cheap on purpose: heavy packages (torch, transformers, ...) are imported
lazily inside the functions that need them, so ``emotk --help`` stays fast.
"""

__version__ = "0.1.0"
