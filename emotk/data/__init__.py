"""Data: manifests, audio I/O, label maps, protocols, dataset importers and the demo corpus."""
