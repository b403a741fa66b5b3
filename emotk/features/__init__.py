"""Feature extraction: SSL upstreams, F0, acoustic targets, content tokens, transcripts, text embeddings."""
