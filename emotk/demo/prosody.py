"""The prosody stage of ``emotk demo``: per-style F0, F0 range, speaking rate and level of the demo corpus,
showing that the styles differ the way the corpus promises."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def prosody_by_style(manifest_path: Path, max_per_style: int = 40) -> dict[str, dict[str, float]]:
    """Mean F0 (Hz, voiced frames), F0 range (std of log-F0 in semitones), speaking rate (words/s) and level (dBFS)
    per emotion style, over at most ``max_per_style`` utterances each (WORLD F0 backend for speed)."""
    import numpy as np

    from emotk.core.audio import SAMPLE_RATE
    from emotk.data.audio import load_audio
    from emotk.data.manifest import Manifest
    from emotk.features.f0 import F0Config, extract_f0

    m = Manifest.load(manifest_path)
    by_style: dict[str, list[dict[str, Any]]] = {}
    for rec in m:
        if rec.get("dialogue") is None and rec.get("emotion"):
            by_style.setdefault(rec["emotion"], []).append(rec)
    cfg = F0Config(backend="world")
    out = {}
    for style in sorted(by_style):
        f0s, rates, levels = [], [], []
        recs = by_style[style]
        step = max(1, len(recs) // max_per_style)  # spread over all speakers, not the first few
        chosen = recs[::step][:max_per_style]
        for rec in chosen:
            wav = load_audio(m.resolve_path(rec))
            f0 = extract_f0(wav, SAMPLE_RATE, cfg)
            voiced = f0[f0 > 0]
            if voiced.size:
                f0s.append(voiced)
            words = len(str(rec.get("text", "")).split())
            rates.append(words / max(len(wav) / SAMPLE_RATE, 1e-3))
            levels.append(20 * np.log10(np.sqrt(np.mean(wav**2)) + 1e-9))
        allf0 = np.concatenate(f0s) if f0s else np.zeros(1)
        semis = 12 * np.log2(allf0[allf0 > 0] / 100.0) if (allf0 > 0).any() else np.zeros(1)
        out[style] = {
            "utterances": len(chosen),
            "mean_f0_hz": round(float(allf0.mean()), 1),
            "f0_range_semitones": round(float(semis.std()), 2),
            "words_per_s": round(float(np.mean(rates)), 2),
            "level_dbfs": round(float(np.mean(levels)), 1),
        }
    return out
