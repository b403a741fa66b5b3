"""Task-independent machinery: config, run directories, provenance, I/O helpers, logging."""
