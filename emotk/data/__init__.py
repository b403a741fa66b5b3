"""Data: manifests, audio I/O, label maps, protocols, dataset importers, the demo corpus and LLM labelling
(:mod:`emotk.data.label`)."""
