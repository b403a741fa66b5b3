"""The zest stage of ``emotk demo``: a tiny S2S-ZEST transfer model trained and measured on the demo corpus.

:func:`zest_demo_stage` holds out ``test_sentences`` parallel sentences (seeded), trains a K-means log-mel
tokenizer, the speaker stage and the analysis stage of the demo recipe (``configs/transfer/zest-demo.yaml``) on
the rest, assembles a bundle and converts the held-out sentences between every ordered pair of styles with the
WORLD backend. As in the thesis's ESD settings, speakers are seen in training and texts are not; the reference is
the same sentence in the target style spoken by the source speaker (SSST) or by another speaker (DSST).

Measured per conversion (F0 with the bundle's extractor, voiced frames only): mean log-F0 of the source, of the
converted output (re-extracted from the synthesised audio) and of the reference; whether the output's mean log-F0
moved from the source's toward the reference's; whether it moved in the direction the reference speaker's own
F0 moves between the two styles on that sentence (speaker-independent: a male source and a female reference
differ in F0 whatever the emotion); the same against the model's reconstruction of the source (the source as its
own reference), which removes the predictor's overall level bias (an L1 target with unvoiced zeros pulls voiced
predictions down where voicing is uncertain), and the Pearson correlation between that shift and the reference
speaker's own style shift; the fraction of outputs with any voiced frame; and the output length against the
predicted durations
(``320 * sum(d_hat)`` samples). Neutral -> other-style outputs are saved as WAV files, with a PNG of the F0
contours of one example per target style.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from emotk.core.audio import HOP, SAMPLE_RATE
from emotk.errors import DataError

log = logging.getLogger("emotk.zest")

DEMO_CONFIG = "transfer/zest-demo"
# The demo's content front-end: log-mel frames normalised per utterance (mean and variance over the active frames),
# so the K-means tokens describe content, not the loudness that differs between the demo's styles.
TOKEN_SPACE = {"name": "logmel", "options": {"cmvn": "meanvar"}}


def _mean_log_f0(f0: np.ndarray, floor: float) -> float | None:
    """Mean of ln(F0 / Hz) over voiced frames (F0 >= floor); None when nothing is voiced."""
    v = np.asarray(f0, dtype=np.float64)
    v = v[v >= floor]
    return float(np.log(v).mean()) if v.size else None


def _held_out_sentences(manifest: Any, test_sentences: int, seed: int) -> tuple[list[str], list[str]]:
    """(training sentences, held-out sentences), both sorted; the held-out ones are a seeded draw."""
    sentences = sorted({str(r["sentence"]) for r in manifest if r.get("sentence") and r.get("dialogue") is None})
    if test_sentences < 1 or len(sentences) < test_sentences + 1:
        raise DataError(f"{manifest.path}: the S2S-ZEST demo needs at least {test_sentences + 1} parallel sentences "
                        f"and test_sentences >= 1 (found {len(sentences)} sentences)")
    rng = np.random.default_rng(seed)
    held = sorted(sentences[i] for i in rng.permutation(len(sentences))[:test_sentences])
    return [x for x in sentences if x not in held], held


def plan_conversions(records: list[dict[str, Any]], styles: list[str], max_per_pair: int | None = None,
                     settings: tuple[str, ...] = ("SSST", "DSST")
                     ) -> list[tuple[dict[str, Any], dict[str, Any], str, str]]:
    """(source record, reference record, target style, setting) for every ordered style pair.

    records: held-out parallel-sentence records (``speaker``, ``emotion``, ``sentence``). The source is (speaker
    X, style a, sentence s); the reference is style b of the same sentence spoken by X (``SSST``: same speaker,
    same text) or by Y, the next speaker after X in sorted order (``DSST``: different speaker, same text), the
    thesis's settings of that name on a parallel corpus. ``max_per_pair`` keeps the first that many of each
    (setting, style pair), sorted by sentence, then speaker.
    """
    index = {(r["speaker"], r["emotion"], r["sentence"]): r for r in records}
    sentences = sorted({r["sentence"] for r in records})
    speakers = sorted({r["speaker"] for r in records})
    out = []
    for setting in settings:
        shift = {"SSST": 0, "DSST": 1}[setting]
        for a in styles:
            for b in styles:
                if a == b:
                    continue
                pair = []
                for s in sentences:
                    for k, x in enumerate(speakers):
                        y = speakers[(k + shift) % len(speakers)]
                        src, ref = index.get((x, a, s)), index.get((y, b, s))
                        if src is not None and ref is not None:
                            pair.append((src, ref, b, setting))
                out.extend(pair[:max_per_pair] if max_per_pair else pair)
    return out


def train_demo_bundle(train_manifest: Path, out_dir: Path, seed: int, config: str = DEMO_CONFIG,
                      overrides: list[str] | tuple[str, ...] = (), fraction: float = 0.5) -> dict[str, Any]:
    """Tokenizer + speaker stage + analysis stage + bundle on ``train_manifest`` under ``out_dir``.

    Config: ``config`` < ``overrides``; the tokenizer is K-means over :data:`TOKEN_SPACE` frames.
    Returns {"bundle": path, "tokenizer": {...}, "speaker": summary, "analysis": summary, "seconds": {...}}.
    Every output is replaced (the demo is rerun from scratch).
    """
    from emotk.core.config import resolve
    from emotk.features.tokens import train_tokenizer
    from emotk.models.zest.export import assemble_bundle
    from emotk.recipes import find_config, task_spec

    spec = task_spec("transfer.zest")
    train = spec.train_fn()  # train(resolved, out, *, stage, ...): the speaker and analysis stages
    secs: dict[str, float] = {}
    t0 = time.perf_counter()
    base = resolve(spec.schema_class(), spec.name, find_config(config),
                   [o for o in overrides if not o.startswith("tokens.tokenizer=")])
    tok_path = out_dir / "tokens.safetensors"
    tok = train_tokenizer(train_manifest, TOKEN_SPACE, tok_path, n_clusters=base.config.tokens.n_clusters,
                          fraction=fraction, seed=seed, overwrite=True)
    secs["tokenizer"] = round(time.perf_counter() - t0, 2)
    sets = [f"tokens.tokenizer={tok_path}", f"data.manifest={train_manifest}",
            f"train.seed={seed}", f"speaker_train.seed={seed}", *overrides]
    resolved = resolve(spec.schema_class(), spec.name, find_config(config), sets)
    t0 = time.perf_counter()
    spk = train(resolved, out_dir / "speaker", stage="speaker", overwrite=True, argv=["emotk", "demo"])
    secs["speaker"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    ana_dir = out_dir / "analysis"
    if ana_dir.exists():
        shutil.rmtree(ana_dir)
    (ana_dir / "cache").mkdir(parents=True)  # same corpus, same cache key: reuse the speaker stage's analysis
    shutil.copy2(out_dir / "speaker" / "cache" / "analysis.npz", ana_dir / "cache" / "analysis.npz")
    ana = train(resolved, out_dir / "analysis", stage="analysis", speaker_run=str(out_dir / "speaker"),
                overwrite=True, argv=["emotk", "demo"])
    secs["analysis"] = round(time.perf_counter() - t0, 2)
    bundle = assemble_bundle(out_dir / "speaker", out_dir / "analysis", out_dir / "bundle", overwrite=True)
    return {"bundle": bundle["bundle"], "tokenizer": {"path": str(tok_path), "n_clusters": tok.get("n_clusters")},
            "speaker": {k: spk.get(k) for k in ("stopped", "steps", "best")},
            "analysis": {k: ana.get(k) for k in ("stopped", "steps", "best")}, "seconds": secs}


def vocoder_demo(bundle_dir: Path, train_manifest: Path, out_dir: Path, steps: int, seed: int,
                 items: int = 48, example: tuple[Path, Path] | None = None) -> dict[str, Any]:
    """A few BigVGAN training steps on the demo corpus and one conversion with the resulting vocoder.

    Writes vocoder items (tokens, F0, s, e-bar, audio) of ``items`` training utterances (the first ones by id),
    trains the tiny vocoder recipe (configs/transfer/vocoder-tiny.yaml, widths set to the bundle's) for ``steps``
    steps, assembles a bundle with it and converts ``example`` = (source wav, reference wav) with ``--synth
    bigvgan``. Returns the mel L1 of the first and last logged steps, the steps, parameter count, seconds and
    the output path. A few hundred steps give buzzy speech: this shows the pipeline, not a usable vocoder.
    """
    import json

    from emotk.core.config import resolve
    from emotk.data.audio import load_audio, save_audio
    from emotk.data.manifest import Manifest
    from emotk.models.zest import infer
    from emotk.models.zest.export import assemble_bundle, load_bundle
    from emotk.recipes import find_config, task_spec

    t0 = time.perf_counter()
    bundle = load_bundle(bundle_dir)
    m = Manifest.load(train_manifest)
    subset = Manifest.from_records(sorted(m.with_absolute_paths().records, key=lambda r: r["id"])[:items])
    item_dir = out_dir / "vocoder-items"
    if item_dir.exists():
        shutil.rmtree(item_dir)
    infer.export_vocoder_items(bundle, subset, item_dir)
    c = bundle.config
    spec = task_spec("transfer.vocoder")
    resolved = resolve(spec.schema_class(), spec.name, find_config("transfer/vocoder-tiny"), [
        f"generator.num_tokens={bundle.tokenizer.n_clusters}", f"generator.speaker_dim={c.speaker.dim}",
        f"generator.emotion_dim={c.emotion.dim}", f"train.max_steps={steps}", f"train.seed={seed}",
        f"train.log_every_steps={max(1, steps // 10)}"])
    run = spec.train_fn()(resolved, out_dir / "vocoder", data=str(item_dir), overwrite=True)
    lines = [json.loads(x) for x in (out_dir / "vocoder" / "metrics.jsonl").read_text().splitlines()]
    mel = [x["mel_l1/generator"] for x in lines if x.get("split") == "train" and "mel_l1/generator" in x]
    voc_bundle = assemble_bundle(out_dir / "speaker", out_dir / "analysis", out_dir / "bundle-bigvgan",
                                 vocoder=run["export"], overwrite=True)
    result = {"steps": run.get("steps"), "items": len(subset), "generator_parameters": run["generator_parameters"],
              "mel_l1_first": round(mel[0], 4) if mel else None, "mel_l1_last": round(mel[-1], 4) if mel else None,
              "bundle": voc_bundle["bundle"]}
    if example is not None:
        vb = load_bundle(voc_bundle["bundle"])
        src, ref = (infer.check_input(load_audio(p), str(p)) for p in example)
        wav, info = infer.transfer(vb, src, ref, synth="bigvgan")
        result["example"] = str(out_dir / "wavs" / f"{Path(example[0]).stem}--bigvgan.wav")
        save_audio(result["example"], wav, SAMPLE_RATE)
        result["example_frames"] = info["frames_after"]
    result["seconds"] = round(time.perf_counter() - t0, 2)
    return result


def plot_f0_examples(examples: list[dict[str, Any]], path: Path) -> Path:
    """One panel per example: source, converted and reference F0 contours (Hz, unvoiced gaps) over seconds.

    examples: dicts with ``title`` and ``source``/``converted``/``reference`` (T,) 50 Hz F0 arrays. Written
    atomically as PNG (matplotlib, Agg backend); returns ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emotk.core.io import atomic_path

    fig, axes = plt.subplots(len(examples), 1, figsize=(8, 2.4 * len(examples)), squeeze=False)
    for ax, ex in zip(axes[:, 0], examples):
        for key, style in (("source", "-"), ("converted", "-"), ("reference", "--")):
            f0 = np.asarray(ex[key], dtype=np.float64)
            ax.plot(np.arange(len(f0)) * HOP / SAMPLE_RATE, np.where(f0 > 0, f0, np.nan), style, label=key, lw=1.4)
        ax.set_title(ex["title"], fontsize=9)
        ax.set_ylabel("F0 (Hz)")
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path


def measure_conversions(bundle: Any, manifest: Any, triples: list[tuple[dict, dict, str, str]], out_dir: Path,
                        save_from: str = "neutral", records: list[dict[str, Any]] | None = None,
                        save_setting: str = "SSST") -> dict[str, Any]:
    """Convert every (source, reference, target, setting) tuple with WORLD; measure log-F0 movement and durations.

    Saves ``out_dir/wavs/<source id>--to-<target>.wav`` for sources of style ``save_from`` in setting
    ``save_setting`` and the F0 plot ``out_dir/f0_before_after.png`` (first such example per target style). Returns
    the measurements:
    overall and per-pair mean log-F0 (source / converted / reference), the fraction moved toward the reference,
    and duration checks (output samples vs 320 * predicted frames). With ``records`` (the parallel records),
    each row also gets the speaker-independent style direction: the reference speaker's own log-F0 change from
    the source style to the target style on the same sentence, and whether the conversion moved the same way.
    """
    from emotk.data.audio import load_audio, save_audio
    from emotk.features.f0 import F0Config, extract_f0
    from emotk.models.zest import infer

    c = bundle.config.f0
    f0_cfg = F0Config(backend=c.backend, alignment=c.alignment)
    floor = f0_cfg.f0_floor
    sources: dict[str, Any] = {}
    refs: dict[str, tuple[Any, np.ndarray]] = {}
    rows, examples, saved = [], {}, []
    index = {(r["speaker"], r["emotion"], r.get("sentence")): r for r in records or []}
    f0_by_id: dict[str, np.ndarray] = {}
    recon: dict[str, float | None] = {}

    def f0_of(rec: dict[str, Any]) -> np.ndarray:
        if rec["id"] not in f0_by_id:
            f0_by_id[rec["id"]] = extract_f0(load_audio(manifest.resolve_path(rec)), SAMPLE_RATE, f0_cfg)
        return f0_by_id[rec["id"]]

    for src_rec, ref_rec, target, setting in triples:
        sid, rid = src_rec["id"], ref_rec["id"]
        if sid not in sources:
            wav = infer.check_input(load_audio(manifest.resolve_path(src_rec)), sid)
            sources[sid] = infer.analyse_source(bundle, wav)
            own = infer.analyse_reference(bundle, wav)  # the source as its own reference: reconstruction
            rec_out = infer.synthesise(bundle, sources[sid], own, infer.convert(bundle, sources[sid], own), "world")
            recon[sid] = _mean_log_f0(extract_f0(rec_out, SAMPLE_RATE, f0_cfg), floor)
        if rid not in refs:
            wav = infer.check_input(load_audio(manifest.resolve_path(ref_rec)), rid)
            refs[rid] = (infer.analyse_reference(bundle, wav), extract_f0(wav, SAMPLE_RATE, f0_cfg))
        src, (ref, ref_f0) = sources[sid], refs[rid]
        conv = infer.convert(bundle, src, ref)
        out = infer.synthesise(bundle, src, ref, conv, "world")
        out_f0 = extract_f0(out, SAMPLE_RATE, f0_cfg)
        m_src, m_out, m_ref = (_mean_log_f0(x, floor) for x in (src.f0, out_f0, ref_f0))
        frames = int(conv.durations.sum())
        row = {"setting": setting, "source": sid, "reference": rid, "source_style": src_rec["emotion"],
               "target": target,
               "log_f0_source": m_src, "log_f0_converted": m_out, "log_f0_reference": m_ref,
               "log_f0_predicted": _mean_log_f0(conv.f0, floor),
               "frames_source": int(src.durations.sum()), "frames_predicted_raw": float(np.sum(conv.predicted)),
               "frames_after": frames, "frames_reference": int(len(ref_f0)), "samples_out": int(out.size)}
        if None not in (m_src, m_out, m_ref):
            row["moved_toward_reference"] = bool(abs(m_out - m_ref) < abs(m_src - m_ref))
        m_rec = row["log_f0_reconstructed"] = recon[sid]
        if None not in (m_rec, m_out, m_ref):
            # the model's own reconstruction of the source as the starting point: removes its level bias
            row["shift_vs_reconstruction"] = m_out - m_rec
            row["moved_toward_reference_vs_reconstruction"] = bool(abs(m_out - m_ref) < abs(m_rec - m_ref))
        same = index.get((ref_rec["speaker"], src_rec["emotion"], ref_rec.get("sentence")))
        m_same = _mean_log_f0(f0_of(same), floor) if same is not None else None
        if None not in (m_same, m_ref):
            row["style_shift_reference"] = m_ref - m_same  # the reference speaker's own source->target change
            if None not in (m_src, m_out):
                row["style_shift_converted"] = m_out - m_src
                row["moved_in_style_direction"] = bool(np.sign(m_out - m_src) == np.sign(m_ref - m_same))
        rows.append(row)
        if src_rec["emotion"] == save_from and setting == save_setting:
            name = f"{sid}--to-{target}.wav"
            save_audio(out_dir / "wavs" / name, out, SAMPLE_RATE)
            saved.append(str(Path("wavs") / name))
            examples.setdefault(target, {"title": f"{sid} -> {target} (reference {rid})", "source": src.f0,
                                         "converted": out_f0, "reference": ref_f0})
    plot = None
    if examples:
        plot = plot_f0_examples([examples[k] for k in sorted(examples)], out_dir / "f0_before_after.png")
    return {"rows": rows, "summary": summarise(rows), "wavs": saved, "plot": str(plot) if plot else None}


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def _pcc(pairs: list[tuple[float, float]]) -> float | None:
    """Pearson correlation of (x, y) pairs; None for < 3 pairs or no variance."""
    from emotk.metrics import pearson

    if len(pairs) < 3:
        return None
    x, y = np.asarray(pairs, dtype=np.float64).T
    r = pearson(x, y)  # NaN when a series is constant
    return None if np.isnan(r) else round(float(r), 4)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate conversion rows: overall, per setting and per (source style -> target) means of log-F0, the
    fraction whose mean log-F0 moved toward the reference (and in the reference speaker's style direction), and
    duration agreement (|samples - 320 * frames| in samples, output/source and reference/source length ratios)."""

    def block(rs: list[dict[str, Any]]) -> dict[str, Any]:
        judged = [r for r in rs if "moved_toward_reference" in r]
        ok = [r for r in judged if r["moved_toward_reference"]]
        styled = [r for r in rs if "moved_in_style_direction" in r]
        vs_rec = [r for r in rs if "shift_vs_reconstruction" in r]
        return {
            "conversions": len(rs),
            "log_f0_source": _mean([r["log_f0_source"] for r in judged]),
            "log_f0_converted": _mean([r["log_f0_converted"] for r in judged]),
            "log_f0_reference": _mean([r["log_f0_reference"] for r in judged]),
            "moved_toward_reference": round(len(ok) / len(judged), 4) if judged else None,
            "style_shift_reference": _mean([r["style_shift_reference"] for r in styled]),
            "style_shift_converted": _mean([r["style_shift_converted"] for r in styled]),
            "moved_in_style_direction": round(float(np.mean([r["moved_in_style_direction"] for r in styled])), 4)
            if styled else None,
            "log_f0_reconstructed": _mean([r["log_f0_reconstructed"] for r in vs_rec]),
            "shift_vs_reconstruction": _mean([r["shift_vs_reconstruction"] for r in vs_rec]),
            "moved_toward_reference_vs_reconstruction": round(float(np.mean(
                [r["moved_toward_reference_vs_reconstruction"] for r in vs_rec])), 4) if vs_rec else None,
            "shift_correlation": _pcc([(r["shift_vs_reconstruction"], r["style_shift_reference"]) for r in vs_rec
                                       if "style_shift_reference" in r]),
            "voiced_outputs": round(len(judged) / len(rs), 4) if rs else None,
            "length_ratio_out": _mean([r["frames_after"] / max(r["frames_source"], 1) for r in rs]),
            "length_ratio_reference": _mean([r["frames_reference"] / max(r["frames_source"], 1) for r in rs]),
        }

    def per_pair(rs: list[dict[str, Any]]) -> dict[str, Any]:
        pairs = sorted({(r["source_style"], r["target"]) for r in rs})
        return {f"{a}->{b}": block([r for r in rs if (r["source_style"], r["target"]) == (a, b)]) for a, b in pairs}

    settings = sorted({r.get("setting", "") for r in rows})
    off = [abs(r["samples_out"] - HOP * r["frames_after"]) for r in rows]
    toward_len = [abs(r["frames_after"] - r["frames_reference"]) < abs(r["frames_source"] - r["frames_reference"])
                  for r in rows if r["frames_reference"] != r["frames_source"]]
    return {
        **block(rows),
        "per_pair": per_pair(rows),
        "settings": {k: {**block([r for r in rows if r.get("setting", "") == k]),
                         "per_target": {t: block([r for r in rows if r.get("setting", "") == k and r["target"] == t])
                                        for t in sorted({r["target"] for r in rows})}}
                     for k in settings},
        "durations": {
            "max_abs_samples_off": int(max(off)) if off else None,
            "all_follow_predictions": bool(all(o <= HOP for o in off)),
            "clamped_vs_raw_frames": _mean([r["frames_after"] / max(r["frames_predicted_raw"], 1e-6) for r in rows]),
            "length_moved_toward_reference": round(float(np.mean(toward_len)), 4) if toward_len else None,
        },
    }


def zest_demo_stage(manifest_path: Path, out_dir: Path, seed: int, *, test_sentences: int = 2,
                    max_per_pair: int | None = None, config: str = DEMO_CONFIG,
                    overrides: list[str] | tuple[str, ...] = (), vocoder_steps: int = 0) -> dict[str, Any]:
    """Train a tiny S2S-ZEST on the demo corpus and measure emotion transfer on held-out sentences.

    manifest_path: the demo corpus manifest (parallel records carry ``sentence``; dialogue turns are used for
    training only). out_dir: the stage folder (replaced files: train.jsonl, tokenizer, speaker/, analysis/,
    bundle/, wavs/, f0_before_after.png, conversions.jsonl). seed: the held-out draw and training seeds.
    test_sentences: parallel sentences held out of training (>= 1; every speaker, every style); as in the thesis's
    ESD settings the speakers are seen in training and the texts are not. max_per_pair: cap on conversions per
    (setting, ordered style pair) (None = all). config / overrides: the recipe and ``--set``-style overrides.
    vocoder_steps: > 0 adds :func:`vocoder_demo` (that many BigVGAN steps, one neutral -> other-style
    conversion when the same speaker says the same sentence in it).
    Returns a JSON-ready dict: sentences (train / held out), the training summary, the overall, per-setting
    (SSST: same-speaker reference; DSST: another speaker's) and per-pair log-F0 measurements, the duration
    checks, paths (bundle, wavs, plot, rows) and seconds per step.
    """
    import json

    from emotk.core.io import atomic_write_text
    from emotk.data.manifest import Manifest
    from emotk.models.zest.export import load_bundle

    t_all = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    m = Manifest.load(manifest_path)
    train_sent, held = _held_out_sentences(m, test_sentences, seed)
    train = Manifest.from_records([r for r in m.with_absolute_paths() if str(r.get("sentence")) not in held
                                   or r.get("dialogue") is not None])
    train.save(out_dir / "train.jsonl")
    trained = train_demo_bundle(out_dir / "train.jsonl", out_dir, seed, config=config, overrides=overrides)
    bundle = load_bundle(trained["bundle"])
    parallel = [r for r in m if r.get("dialogue") is None and str(r.get("sentence")) in held]
    styles = sorted({r["emotion"] for r in parallel})
    missing = [x for x in styles if x not in bundle.emotions]
    if missing or "neutral" not in styles:
        raise DataError(f"{manifest_path}: held-out styles {styles} do not match the trained ones {bundle.emotions}")
    order = ["neutral"] + [x for x in styles if x != "neutral"]
    triples = plan_conversions(parallel, order, max_per_pair)
    t0 = time.perf_counter()
    measured = measure_conversions(bundle, m, triples, out_dir, records=parallel)
    secs = {**trained["seconds"], "convert": round(time.perf_counter() - t0, 2)}
    rows_path = out_dir / "conversions.jsonl"
    atomic_write_text(rows_path, "".join(json.dumps(r) + "\n" for r in measured["rows"]))
    vocoder = None
    if vocoder_steps > 0:
        src = next(r for r in parallel if r["emotion"] == "neutral")  # exists: checked above
        ref = next((r for r in parallel if r["emotion"] != "neutral" and r["speaker"] == src["speaker"]
                    and r["sentence"] == src["sentence"]), None)  # the same sentence in another style
        example = (m.resolve_path(src), m.resolve_path(ref)) if ref is not None else None
        vocoder = vocoder_demo(Path(trained["bundle"]), out_dir / "train.jsonl", out_dir, vocoder_steps, seed,
                               example=example)
        secs["vocoder"] = vocoder["seconds"]
    held_path = out_dir / "held_out.jsonl"
    Manifest.from_records([r for r in m.with_absolute_paths() if r.get("dialogue") is None
                           and str(r.get("sentence")) in held]).save(held_path)
    secs["total"] = round(time.perf_counter() - t_all, 2)
    s = measured["summary"]
    log.info("zest demo: %d conversions, mean log-F0 moved toward the reference in %.0f %%", s["conversions"],
             100 * (s["moved_toward_reference"] or 0))
    return {
        "train_sentences": train_sent, "held_out_sentences": held, "styles": order,
        "training": {k: trained[k] for k in ("tokenizer", "speaker", "analysis")},
        **{k: s[k] for k in ("conversions", "log_f0_source", "log_f0_converted", "log_f0_reference",
                             "moved_toward_reference", "style_shift_reference", "style_shift_converted",
                             "moved_in_style_direction", "log_f0_reconstructed", "shift_vs_reconstruction",
                             "moved_toward_reference_vs_reconstruction", "shift_correlation", "voiced_outputs",
                             "length_ratio_out",
                             "length_ratio_reference")},
        "settings": s["settings"], "per_pair": s["per_pair"], "durations": s["durations"],
        "bundle": trained["bundle"], "held_out_manifest": str(held_path), "vocoder": vocoder,
        "wavs": [str(out_dir / w) for w in measured["wavs"]],
        "plot": measured["plot"], "conversions_log": str(rows_path), "seconds": secs,
    }
