"""``emotk evaluate est``: emotion-style-transfer systems scored on the thesis's settings (Table 5.2).

One run folder ``OUT`` holds the whole evaluation::

    OUT/run.json, config.yaml, log.txt        provenance (config hash, model bundle / pair file / manifest hashes)
    OUT/pairs/<SETTING>.jsonl                 the pair files used (copied or built; emotk.eval.pairs format)
    OUT/plan.json                             what is scored: settings -> selected pair ids, systems, noise levels
    OUT/scores/scores[.shard-i-of-N].jsonl    one line per (system, noise, pair): the per-pair measurements
    OUT/report/                               results.json, results.csv, table.md, PNG plots (emotk.eval.report)

Systems: each model bundle given as ``--model [NAME=]DIR`` (default name ``s2s-zest``), optionally as the ablation
``NAME:fixed-durations`` (the duration predictor switched off: source durations kept), and the floors
``world-baseline`` and ``copy-source`` (:mod:`emotk.eval.baselines`). Every system converts every selected pair;
with ``noise.snr_db`` the sources are also corrupted at each SNR (noise per pair id, the same for every system).

Measures per pair (:mod:`emotk.eval.measures`; every backend's name lands in the report): Emo-Sim = cosine of the
emotion embeddings of reference vs converted (and source vs converted, for the any-to-any matrix); Spk-Sim =
cosine of Resemblyzer embeddings of the clean source vs converted; the converted output's Whisper transcript
(corpus-level WER/CER against the source transcript: the manifest's ``measures.transcript_field``, else Whisper on
the clean source) and its word timings; the reference's word timings (word speaking rate, PCC over pairs). The
word timings come from Whisper's word timestamps, not from the CTC forced alignment of the thesis (METHODS.md
section 6): a deviation, named in the report's ``rate`` backend. With ``measures.emotion=auto`` and no local
emotion2vec, Emo-Sim uses the evaluated bundle's own emotion encoder, which favours that bundle: such numbers
are not comparable with the thesis's (the report names the backend).

Resume and shards: every scored line is appended and fsynced before the next pair starts, so a killed run
continues with ``--resume`` without redoing a finished (system, noise, pair). ``--shard i/N`` scores the pairs
with index % N == i (index over the selected pairs, settings in order) into its own scores file; all shards may
write into the same OUT (a shard that starts while another sets the folder up waits for its run.json), and the
report is rebuilt from every scores file there after each run (its ``coverage`` says how many of the planned
lines exist), so the parts merge into the table of one run; ``--report-only`` after the last shard rebuilds it
from all of them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

import numpy as np

from emotk.errors import AudioError, ConfigError, DataError, UsageError
from emotk.eval.baselines import BASELINES
from emotk.eval.pairs import ANY_TO_ANY, PARALLEL, SETTINGS, PairOptions, audio_index, spread

log = logging.getLogger("emotk.eval")

TASK = "evaluate.est"
SAMPLE_RATE = 16000
PLAN_FORMAT = "emotk.est_plan"
SCORE_FORMAT = "emotk.est_score"
DEFAULT_MODEL_NAME = "s2s-zest"
VARIANTS = ("fixed-durations",)
LARGE_V3 = (("faster-whisper", "whisper-large-v3-ct2"), ("hf-whisper", "whisper-large-v3"),
            ("openai-whisper", "whisper-large-v3-pt"))


# ---- config ----------------------------------------------------------------------------------------------------------
@dataclass
class EstMeasures:
    """Which backend computes each measure (thesis: emotion2vec, Whisper large-v3, Resemblyzer, CTC word timings)."""

    # auto: emotion2vec when a local copy resolves (emotion2vec-plus-base, then emotion2vec-base), else the first
    # model bundle's own emotion encoder (named in the report); zest:BUNDLE_DIR | ser:EXPORT_DIR (SER class
    # posteriors) | upstream:NAME[:LAYER] | emotion2vec[:PATH|:NAME]
    emotion: str = "auto"
    # auto: Whisper large-v3 when a local copy resolves (faster-whisper, HF or openai-whisper format), else the
    # bundled faster-whisper tiny.en; or faster-whisper | openai-whisper | hf-whisper with asr_model
    asr: Literal["auto", "faster-whisper", "openai-whisper", "hf-whisper"] = "auto"
    asr_model: str = ""
    beam_size: int = 5
    # a fixed decoding temperature: 0 = deterministic beam search (no sampling fallback), so resumed or sharded
    # runs give the same transcripts; -1 = Whisper's fallback schedule (samples when the beams fail)
    temperature: float = 0.0
    normalize_text: bool = True  # Whisper's English text normaliser before WER/CER
    transcript_field: str = "text"  # the source transcript in the manifest (Whisper on the source when absent)
    speaker: Literal["resemblyzer"] = "resemblyzer"
    rate: Literal["asr-words"] = "asr-words"  # word timings from Whisper's word timestamps


@dataclass
class EstNoise:
    """Additive-noise robustness (thesis: 20 and 10 dB SNR added to the sources)."""

    snr_db: list[float] = field(default_factory=list)
    folder: str = ""  # recorded noise (every audio file below it); "" = generated coloured noise
    color: Literal["white", "pink", "brown"] = "white"
    seed: int = 0
    systems: list[str] = field(default_factory=list)  # [] = every system


@dataclass
class EstBaseline:
    """The training-free world-baseline system."""

    f0: bool = True  # map log-F0 mean and range onto the reference's
    tempo: bool = True  # stretch to the reference's syllable rate
    max_tempo_change: float = 0.4  # the +-40 % clamp of the thesis's durations
    f0_backend: Literal["world", "yaapt", "harvest"] = "world"
    f0_method: Literal["dio", "harvest"] = "dio"


@dataclass
class EstConfig:
    """Task ``evaluate.est`` (configs/evaluate/*.yaml)."""

    settings: list[str] = field(default_factory=list)  # [] = those of --pairs, or SSST..DSDT when pairs are built
    systems: list[str] = field(default_factory=list)  # [] = every --model + world-baseline + copy-source
    synth: str = ""  # world | bigvgan for the model bundles ("" = each bundle's transfer.synth)
    limit: int = 0  # pairs per setting, evenly spaced over the file (0 = all)
    pairs: PairOptions = field(default_factory=PairOptions)  # how pairs are built from --data / --references
    measures: EstMeasures = field(default_factory=EstMeasures)
    noise: EstNoise = field(default_factory=EstNoise)
    baseline: EstBaseline = field(default_factory=EstBaseline)
    save_audio: bool = False  # keep the converted audio under OUT/audio/<system>/<pair>.wav

    def validate(self) -> None:
        bad = [s for s in self.settings if s not in SETTINGS]
        if bad:
            raise ConfigError(f"config key 'settings': unknown setting '{bad[0]}' (known: {', '.join(SETTINGS)})")
        if self.limit < 0:
            raise ConfigError(f"config key 'limit': must be >= 0, got {self.limit}")
        if self.synth not in ("", "world", "bigvgan"):
            raise ConfigError(f"config key 'synth': {self.synth!r} is not world, bigvgan or empty")
        for v in self.noise.snr_db:
            if not math.isfinite(v):
                raise ConfigError(f"config key 'noise.snr_db': {v} is not a finite number of dB")
        if not 0.0 < self.baseline.max_tempo_change < 1.0:
            raise ConfigError("config key 'baseline.max_tempo_change': must be in (0, 1)")
        if self.measures.beam_size < 1:
            raise ConfigError("config key 'measures.beam_size': must be >= 1")


# ---- systems -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class System:
    """One row group of the table: ``kind`` zest | world-baseline | copy-source; ``model`` for zest systems."""

    name: str
    kind: str
    model: str | None = None
    variant: str | None = None


def parse_models(items: Iterable[str | os.PathLike]) -> dict[str, Path]:
    """``--model [NAME=]DIR`` values -> {name: folder} (default name ``s2s-zest``; names must be unique)."""
    out: dict[str, Path] = {}
    for item in items:
        text = str(item)
        name, sep, path = text.partition("=")
        if not sep or os.sep in name or not name:
            name, path = DEFAULT_MODEL_NAME if not out else f"model{len(out) + 1}", text
        if name in BASELINES or ":" in name:
            raise UsageError(f"--model {text}: '{name}' cannot name a model (reserved or contains ':')")
        if name in out:
            raise UsageError(f"--model {text}: the name '{name}' is given twice")
        out[name] = Path(os.path.expanduser(path))
    return out


def parse_systems(names: Sequence[str], models: Mapping[str, Any]) -> list[System]:
    """Config ``systems`` (or [] for the default) -> :class:`System` list, checked against the models."""
    wanted = list(names) or [*models, *BASELINES]
    out, seen = [], set()
    for name in wanted:
        if name in seen:
            raise ConfigError(f"config key 'systems': '{name}' is listed twice")
        seen.add(name)
        if name in BASELINES:
            out.append(System(name, name))
            continue
        model, _, variant = name.partition(":")
        if model not in models:
            known = ", ".join([*models, *BASELINES]) or "(no --model given)"
            raise ConfigError(f"config key 'systems': '{name}' is neither a baseline nor a --model name "
                              f"(known: {known}; a model variant is NAME:{VARIANTS[0]})")
        if variant and variant not in VARIANTS:
            raise ConfigError(f"config key 'systems': unknown variant '{variant}' of model '{model}' "
                              f"(known: {', '.join(VARIANTS)})")
        out.append(System(name, "zest", model, variant or None))
    return out


# ---- pairs and plan ------------------------------------------------------------------------------------------------
def _manifests(paths: Sequence[str | os.PathLike], roots: dict[str, str] | None) -> list[Any]:
    from emotk.data.manifest import Manifest

    return [Manifest.load(p, roots=roots) for p in paths]


def prepare_pairs(cfg: EstConfig, out_dir: Path, pair_files: Sequence[str | os.PathLike],
                  sources: Sequence[Any], references: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Copy (``pair_files``) or build (from the ``sources`` / ``references`` manifests) the pair files of the
    configured settings into ``out_dir/pairs``; returns {setting: {"file", "sha256", "header", "pairs"}}.

    A pair file already in ``out_dir/pairs`` (an earlier shard or run) must be byte-identical to the new one.
    """
    from emotk.core.io import atomic_write_bytes, sha256_bytes
    from emotk.data.manifest import merge
    from emotk.eval.pairs import build_pairs, pairs_text, read_pairs, summary

    folder = out_dir / "pairs"
    folder.mkdir(parents=True, exist_ok=True)
    texts: dict[str, bytes] = {}
    if pair_files:
        for path in pair_files:
            header, _ = read_pairs(path)
            setting = header["setting"]
            if setting in texts:
                raise UsageError(f"--pairs {path}: a second pair file for setting {setting}")
            if cfg.settings and setting not in cfg.settings:
                continue
            texts[setting] = Path(path).read_bytes()
        missing = [s for s in cfg.settings if s not in texts]
        if missing:
            raise UsageError(f"setting {missing[0]} was asked for but no --pairs file holds it")
    else:
        if not sources:
            raise UsageError("give --pairs FILE (a pair file per setting) or --data MANIFEST to build the pairs from")
        src = sources[0] if len(sources) == 1 else merge(sources)
        ref = None if not references else references[0] if len(references) == 1 else merge(references)
        for setting in cfg.settings or PARALLEL:
            pairset = build_pairs(setting, src, ref if setting not in (*PARALLEL, ANY_TO_ANY) else None, cfg.pairs)
            log.info("pairs %s", summary(pairset))
            if not pairset.pairs:
                raise DataError(f"setting {setting}: no pairs could be built ({pairset.report['why']})")
            texts[setting] = pairs_text(pairset).encode("utf-8")
    out = {}
    for setting in [s for s in SETTINGS if s in texts]:
        target = folder / f"{setting}.jsonl"
        data = texts[setting]
        if target.exists() and target.read_bytes() != data:
            raise UsageError(f"{target}: this run folder holds other {setting} pairs; use the same pairs "
                             "(or a new -o folder / --overwrite)")
        if not target.exists():
            atomic_write_bytes(target, data)
        header, pairs = read_pairs(target)
        out[setting] = {"file": str(target.relative_to(out_dir)), "sha256": sha256_bytes(data),
                        "header": header, "pairs": pairs}
    return out


def make_plan(cfg: EstConfig, pairsets: Mapping[str, Mapping[str, Any]], systems: Sequence[System],
              models: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The plan of an evaluation (JSON-ready): per setting the pair file, its hash and the selected ids; systems;
    noise levels (None = clean) and the systems that get them; the model bundles (path, sha256)."""
    noise_systems = cfg.noise.systems or [s.name for s in systems]
    unknown = [n for n in noise_systems if n not in {s.name for s in systems}]
    if unknown:
        raise ConfigError(f"config key 'noise.systems': '{unknown[0]}' is not one of the evaluated systems")
    return {
        "format": PLAN_FORMAT, "version": 1,
        "settings": {s: {"file": p["file"], "sha256": p["sha256"], "pairs": len(p["pairs"]),
                         "selected": spread([x["id"] for x in p["pairs"]], cfg.limit or None)}
                     for s, p in pairsets.items()},
        "systems": [s.name for s in systems],
        "noise": [None, *cfg.noise.snr_db],
        "noise_systems": noise_systems,
        "models": {k: dict(v) for k, v in models.items()},
    }


def planned_keys(plan: Mapping[str, Any]) -> list[tuple[str, float | None, str]]:
    """Every (system, noise dB or None, pair id) the plan scores, in processing order."""
    keys = []
    for setting in plan["settings"]:
        for pid in plan["settings"][setting]["selected"]:
            for system in plan["systems"]:
                for snr in plan["noise"]:
                    if snr is None or system in plan["noise_systems"]:
                        keys.append((system, snr, pid))
    return keys


def score_key(system: str, snr: float | None, pair_id: str) -> str:
    return f"{system}|{'clean' if snr is None else f'{float(snr):g}dB'}|{pair_id}"


# ---- scores files --------------------------------------------------------------------------------------------------
def _scores_name(shard: tuple[int, int]) -> str:
    return "scores.jsonl" if shard[1] == 1 else f"scores.shard-{shard[0]}-of-{shard[1]}.jsonl"


def read_scores(out_dir: Path) -> dict[str, dict[str, Any]]:
    """{score key: record} of every ``scores*.jsonl`` under ``out_dir/scores`` (a line cut by a kill is ignored;
    a later line for the same key wins)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((Path(out_dir) / "scores").glob("scores*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and rec.get("format") == SCORE_FORMAT and "key" in rec:
                    found[rec["key"]] = rec
    return found


# ---- measures ------------------------------------------------------------------------------------------------------
def choose_asr(m: EstMeasures) -> tuple[str, str | None]:
    """(backend, model) of the ASR measure; ``auto`` -> Whisper large-v3 when a local copy resolves, else the
    bundled faster-whisper tiny.en (logged)."""
    if m.asr != "auto":
        return m.asr, m.asr_model or None
    if m.asr_model:
        return "faster-whisper", m.asr_model
    from emotk import hub

    for backend, name in LARGE_V3:
        try:
            if hub.locate(name) is not None:
                return backend, name
        except Exception:  # an unusable cache entry: try the next format
            continue
    log.warning("Whisper large-v3 (the thesis's WER model) is not available locally; WER/CER and word timings use "
                "the bundled faster-whisper tiny.en (place large-v3 under $EMOTK_MODELS to use it)")
    return "faster-whisper", None


class _LRU(OrderedDict):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_or(self, key: Any, make: Callable[[], Any]) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        if len(self) > self.size:
            self.popitem(last=False)
        return value


class Scorer:
    """The measures of one evaluation with per-utterance caches (references and sources recur across pairs)."""

    def __init__(self, emotion: Any, speaker: Any, asr: Any, normalize: bool, cache: int = 4096) -> None:
        self.emotion, self.speaker, self.asr, self.normalize = emotion, speaker, asr, normalize
        self._emo, self._spk, self._asr = _LRU(cache), _LRU(cache), _LRU(cache)

    @property
    def backends(self) -> dict[str, str]:
        return {"emotion": self.emotion.name, "speaker": self.speaker.name, "asr": self.asr.name,
                "rate": f"word timestamps of {self.asr.name}"}

    def emotion_of(self, uid: str, wav: np.ndarray) -> np.ndarray:
        return self._emo.get_or(uid, lambda: self.emotion.embed(wav))

    def speaker_of(self, uid: str, wav: np.ndarray) -> np.ndarray:
        return self._spk.get_or(uid, lambda: self.speaker.embed(wav))

    def asr_of(self, uid: str, wav: np.ndarray) -> dict[str, Any]:
        return self._asr.get_or(uid, lambda: self.asr.transcribe_one(wav))

    def score(self, converted: np.ndarray, src_id: str, src: np.ndarray, ref_id: str, ref: np.ndarray,
              transcript: str) -> dict[str, Any]:
        """Per-pair measurements of one converted waveform (see the module docstring)."""
        from emotk.eval.measures import cosine, utterance_error_rates, word_rate

        e_conv = self.emotion.embed(converted)
        hyp = self.asr.transcribe_one(converted)
        errors = utterance_error_rates(transcript, hyp["text"], normalize=self.normalize)
        return {
            "emo_sim": cosine(e_conv, self.emotion_of(ref_id, ref)),
            "emo_sim_source": cosine(e_conv, self.emotion_of(src_id, src)),
            "spk_sim": cosine(self.speaker.embed(converted), self.speaker_of(src_id, src)),
            "hypothesis": hyp["text"], "transcript": transcript,
            "wer": None if errors is None else errors["wer"], "cer": None if errors is None else errors["cer"],
            "rate_reference": word_rate(self.asr_of(ref_id, ref).get("words")),
            "rate_converted": word_rate(hyp.get("words")),
        }


# ---- the evaluation ------------------------------------------------------------------------------------------------
class _Corpus:
    """id -> (manifest, record) over every given manifest; decoded audio kept in a small LRU."""

    def __init__(self, manifests: Sequence[Any], cache: int = 256) -> None:
        self.where = audio_index(manifests)
        self._audio = _LRU(cache)
        self.analysis = _LRU(cache)  # (model, reference id) -> the bundle's reference analysis

    def record(self, uid: str, pair_id: str, key: str) -> dict[str, Any]:
        if uid not in self.where:
            raise DataError(f"pair {pair_id}: key '{key}': id '{uid}' is in none of the --data/--references "
                            "manifests")
        return self.where[uid][1]

    def audio(self, uid: str) -> np.ndarray:
        def load() -> np.ndarray:
            from emotk.data.audio import load_audio

            m, rec = self.where[uid]
            return load_audio(m.resolve_path(rec), start=rec.get("start"), end=rec.get("end"))

        return self._audio.get_or(uid, load)


def _bundle_info(path: Path) -> dict[str, Any]:
    from emotk.core.io import sha256_file

    meta = path / "bundle.json"
    if not meta.is_file():
        raise DataError(f"{path}: not an S2S-ZEST model bundle (no bundle.json); build one with "
                        "`emotk transfer bundle`")
    return {"path": str(path.resolve()), "sha256": sha256_file(meta)}


def _aggregate(records: Sequence[Mapping[str, Any]], normalize: bool) -> dict[str, Any]:
    """Per-pair records of one (system, noise, setting) -> the metrics entry of the results (WER/CER in %)."""
    from emotk.eval.measures import pearson, wer_cer

    ok = [r for r in records if r.get("status") == "ok"]
    entry: dict[str, Any] = {"n": len(ok), "n_failed": len(records) - len(ok)}
    if not ok:
        return {**entry, "emo_sim": None, "spk_sim": None, "wer": None, "cer": None, "rate_pcc": None}
    entry["emo_sim"] = float(np.mean([r["emo_sim"] for r in ok]))
    entry["emo_sim_source"] = float(np.mean([r["emo_sim_source"] for r in ok]))
    entry["spk_sim"] = float(np.mean([r["spk_sim"] for r in ok]))
    rates = wer_cer([r["transcript"] for r in ok], [r["hypothesis"] for r in ok], normalize=normalize)
    entry["wer"], entry["cer"] = (None, None) if rates["wer"] is None else (100.0 * rates["wer"], 100.0 * rates["cer"])
    r, n = pearson([x["rate_reference"] for x in ok], [x["rate_converted"] for x in ok])
    entry["rate_pcc"], entry["rate_pairs"] = r, n
    return entry


def build_results(plan: Mapping[str, Any], scores: Mapping[str, Mapping[str, Any]], provenance: Mapping[str, Any],
                  normalize: bool = True) -> dict[str, Any]:
    """The results dict of :mod:`emotk.eval.report` from the planned keys that have a scores line."""
    from emotk.eval.measures import emotion_matrix

    keys = planned_keys(plan)
    setting_of = {pid: s for s, v in plan["settings"].items() for pid in v["selected"]}
    groups: dict[tuple[str, float | None, str], list[Mapping[str, Any]]] = {}
    for system, snr, pid in keys:
        rec = scores.get(score_key(system, snr, pid))
        if rec is not None:
            groups.setdefault((system, snr, setting_of[pid]), []).append(rec)
    systems: dict[str, dict[str, Any]] = {}
    noise: dict[str, dict[str, Any]] = {}
    for (system, snr, setting), recs in groups.items():
        section, label = (systems, system) if snr is None else (noise, f"{system}@{float(snr):g}dB")
        section.setdefault(label, {})[setting] = _aggregate(recs, normalize)
    matrices = {}
    if ANY_TO_ANY in plan["settings"]:
        ok = {system: [r for r in groups.get((system, None, ANY_TO_ANY), []) if r.get("status") == "ok"]
              for system in plan["systems"]}
        # one label set for every system's matrix: the emotions of all systems' scored pairs
        seen = {r[k] for recs in ok.values() for r in recs for k in ("source_emotion", "reference_emotion")}
        labels = sorted(seen, key=lambda e: (e != "neutral", e))
        for system, recs in ok.items():
            if not recs:
                continue
            rows, cols = [r["source_emotion"] for r in recs], [r["reference_emotion"] for r in recs]
            _, vs_ref = emotion_matrix(rows, cols, [r["emo_sim"] for r in recs], labels)
            _, vs_src = emotion_matrix(rows, cols, [r["emo_sim_source"] for r in recs], labels)
            matrices[system] = {"labels": labels, "vs_reference": vs_ref.tolist(), "vs_source": vs_src.tolist()}
    done = sum(score_key(*k) in scores for k in keys)
    prov = {**provenance, "coverage": {"scored": done, "planned": len(keys), "complete": done == len(keys)}}
    out: dict[str, Any] = {"provenance": prov, "systems": systems}
    if noise:
        out["noise"] = noise
    if matrices:
        out["matrices"] = matrices
    return out


def run_est(resolved: Any, out_dir: str | os.PathLike, *, models: Sequence[str | os.PathLike] = (),
            pair_files: Sequence[str | os.PathLike] = (), data: Sequence[str | os.PathLike] = (),
            references: Sequence[str | os.PathLike] = (), roots: dict[str, str] | None = None,
            shard: str | None = None, resume: bool = False, overwrite: bool = False, report_only: bool = False,
            argv: list[str] | None = None, progress_every: int = 10,
            on_pair: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run (or continue, or only report) an EST evaluation into ``out_dir``; returns a JSON-ready summary.

    resolved: a :class:`emotk.core.config.Resolved` of :class:`EstConfig`. models: ``[NAME=]BUNDLE_DIR`` values.
    pair_files: pair files (``emotk.est_pairs``), else pairs are built from ``data`` (sources) and ``references``
    (unseen settings). data / references: manifests holding the pair ids (audio paths). shard ``"i/N"``; resume:
    keep what is scored; report_only: no scoring, rebuild the report from the scores there. on_pair: called with
    the number of pairs finished in this process (tests use it to interrupt a run).
    Returns {"out_dir", "scored" (this process), "skipped_done", "failed", "coverage", "report": paths, "table"}.
    """
    from emotk.core.runs import RunDir
    from emotk.core.shard import parse_shard
    from emotk.eval.report import render_markdown, write_est_report

    cfg: EstConfig = resolved.config
    out = Path(out_dir)
    i, n = parse_shard(shard) or (0, 1)
    if not report_only and not data:
        raise UsageError("--data: give the manifest(s) holding the pairs' audio (the pairs are built from them, or "
                         "read from --pairs FILE)")
    model_dirs = parse_models(models)
    model_info = {name: _bundle_info(path) for name, path in model_dirs.items()}
    systems = parse_systems(cfg.systems, model_dirs)
    sources, refs = _manifests(data, roots), _manifests(references, roots)
    inputs = {f"model:{k}": v["sha256"] for k, v in model_info.items()}
    # keyed by the manifest's absolute path: two --data files may share a name (every corpus has a manifest.jsonl)
    inputs.update({f"data:{Path(m.path).absolute()}": m.sha256 for m in sources})
    inputs.update({f"references:{Path(m.path).absolute()}": m.sha256 for m in refs})
    if report_only:
        run = RunDir.open(out)
    else:
        if n > 1 and overwrite:
            raise UsageError("--overwrite with --shard would delete the other shards' work: start the shards in an "
                             "empty folder, or continue them with --resume")
        # shards share one run folder: the first creates it, the others join it (same config hash required)
        if n > 1:
            _wait_for_run_json(out)
        run = RunDir.create(out, resolved, overwrite=overwrite, resume=resume or n > 1, inputs=inputs, argv=argv)
        run.attach_log()
        old = run.meta.get("inputs") or {}
        changed = sorted(k for k in set(old) | set(inputs) if old.get(k) != inputs.get(k))
        if changed:
            raise UsageError(f"{out}: this run folder was started with other inputs ({changed[0]} differs); use the "
                             "same --model/--data or a new -o folder")
    plan_path = out / "plan.json"
    if report_only:
        if not plan_path.is_file():
            raise DataError(f"{out}: no plan.json (not an `emotk evaluate est` run folder)")
        plan = json.loads(plan_path.read_text(encoding="utf-8"))
    else:
        pairsets = prepare_pairs(cfg, out, pair_files, sources, refs)
        plan = make_plan(cfg, pairsets, systems, model_info)
        if plan_path.is_file():
            if json.loads(plan_path.read_text(encoding="utf-8")) != json.loads(json.dumps(plan)):
                raise UsageError(f"{plan_path}: the evaluation plan differs from this command's (settings, limit, "
                                 "systems or noise changed); use the same config or a new -o folder")
        else:
            from emotk.core.io import atomic_write_json

            atomic_write_json(plan_path, plan)
    counts = {"scored": 0, "skipped_done": 0, "failed": 0}
    backends: dict[str, str] = {}
    if not report_only:
        counts, backends = _score(cfg, resolved, out, plan, pairsets, systems, model_dirs, sources + refs,
                                  (i, n), resume, progress_every, on_pair)
        if backends:
            run.update(backends=backends)
    backends = backends or run.meta.get("backends") or {}
    provenance = _provenance(run, plan, backends)
    # the run's own settings (a --report-only call resolves only the default config)
    normalize = bool(((run.meta.get("config") or {}).get("measures") or {}).get("normalize_text",
                                                                                 cfg.measures.normalize_text))
    results = build_results(plan, read_scores(out), provenance, normalize)
    paths = write_est_report(results, out / "report")
    cov = results["provenance"]["coverage"]
    if not cov["complete"]:
        log.info("report covers %d of %d planned (system, noise, pair) scores; run the other shards or --resume",
                 cov["scored"], cov["planned"])
    return {"out_dir": str(out), **counts, "coverage": cov,
            "report": {k: [str(p) for p in v] if isinstance(v, list) else str(v) for k, v in paths.items()},
            "table": render_markdown(results)}


def _provenance(run: Any, plan: Mapping[str, Any], backends: Mapping[str, str]) -> dict[str, Any]:
    from emotk.core.runs import package_versions

    models = plan.get("models") or {}
    first = next(iter(models.values()), {})
    argv = run.meta.get("argv") or []
    versions = package_versions(("torch", "faster-whisper", "jiwer", "resemblyzer", "pyworld", "transformers"))
    prov = {
        "command": " ".join(["emotk", *map(str, argv[1:])]) if argv else None,
        "created": run.meta.get("created"), "emotk_version": run.meta.get("emotk_version"),
        "git_revision": run.meta.get("git_revision"), "config_hash": run.meta.get("config_hash"),
        "bundle": first.get("path"), "bundle_sha256": first.get("sha256"),
        "pairs": {s: {"path": v["file"], "sha256": v["sha256"], "count": len(v["selected"]), "of": v["pairs"]}
                  for s, v in plan["settings"].items()},
        "backends": dict(backends), "versions": versions,
    }
    if len(models) > 1:
        prov["models"] = {k: v.get("sha256") for k, v in models.items()}
    return prov


def choose_emotion(m: EstMeasures, model_dirs: Mapping[str, Path]) -> str:
    """The emotion-embedder spec of Emo-Sim; ``auto`` -> ``emotion2vec:NAME`` when a local copy of
    emotion2vec-plus-base or emotion2vec-base resolves (file system only), else ``zest:`` the first model
    bundle (logged either way). Raises UsageError for ``auto`` with neither."""
    if m.emotion != "auto":
        return m.emotion
    from emotk.eval.measures import EMOTION2VEC_MODELS, locate_emotion2vec

    name = locate_emotion2vec()
    if name is not None:
        log.info("Emo-Sim: emotion2vec (%s, found locally)", name)
        return f"emotion2vec:{name}"
    if not model_dirs:
        raise UsageError(f"measures.emotion=auto: no local copy of {' or '.join(EMOTION2VEC_MODELS)} and no --model "
                         "bundle; set measures.emotion=emotion2vec:PATH, zest:BUNDLE_DIR or upstream:NAME[:LAYER]")
    first = next(iter(model_dirs.values()))
    log.info("Emo-Sim: emotion2vec is not available locally (%s; `emotk models download %s` where a network "
             "exists); using the emotion encoder of %s", " or ".join(EMOTION2VEC_MODELS), EMOTION2VEC_MODELS[0], first)
    return f"zest:{first}"


def _make_scorer(cfg: EstConfig, model_dirs: Mapping[str, Path], device: str) -> Scorer:
    from emotk.eval.measures import SpeakerEmbedder, Transcriber, make_emotion_embedder

    emotion = make_emotion_embedder(choose_emotion(cfg.measures, model_dirs), device=device)
    backend, model = choose_asr(cfg.measures)
    options: dict[str, Any] = {"beam_size": cfg.measures.beam_size}
    if backend != "hf-whisper" and cfg.measures.temperature >= 0:  # HF generate decodes deterministically
        options["temperature"] = cfg.measures.temperature
    asr = Transcriber(backend, model, device=device, normalize=cfg.measures.normalize_text, **options)
    return Scorer(emotion, SpeakerEmbedder(device=device), asr, cfg.measures.normalize_text)


def _score(cfg: EstConfig, resolved: Any, out: Path, plan: Mapping[str, Any], pairsets: Mapping[str, Any],
           systems: Sequence[System], model_dirs: Mapping[str, Path], manifests: Sequence[Any],
           shard: tuple[int, int], resume: bool, progress_every: int,
           on_pair: Callable[[int], None] | None) -> tuple[dict[str, int], dict[str, str]]:
    from emotk.core.runtime import apply_threads, device_name
    from emotk.eval.baselines import WorldProsodyBaseline
    from emotk.eval.measures import NoiseBank
    from emotk.models.zest.export import load_bundle

    device = device_name(resolved.runtime.device)
    apply_threads(resolved.runtime.threads)
    by_id = {p["id"]: (s, p) for s, v in pairsets.items() for p in v["pairs"]}
    order = [pid for s in plan["settings"] for pid in plan["settings"][s]["selected"]]
    mine = [pid for k, pid in enumerate(order) if k % shard[1] == shard[0]]
    scores_dir = out / "scores"
    scores_dir.mkdir(parents=True, exist_ok=True)
    path = scores_dir / _scores_name(shard)
    if path.exists() and not resume:
        raise UsageError(f"{path} exists: continue this shard with --resume (or start over with --overwrite)")
    done = read_scores(out) if resume else {}
    jobs = {pid: [(sys, snr) for sys in systems for snr in plan["noise"]
                  if snr is None or sys.name in plan["noise_systems"]] for pid in mine}
    counts = {"scored": 0, "skipped_done": 0, "failed": 0}
    todo: dict[str, list[tuple[System, float | None]]] = {}
    for pid, items in jobs.items():
        # failed scores are tried again (the new line replaces the old one: read_scores keeps a key's last line)
        left = [(sys, snr) for sys, snr in items
                if done.get(score_key(sys.name, snr, pid), {}).get("status") != "ok"]
        counts["skipped_done"] += len(items) - len(left)
        if left:
            todo[pid] = left
    if not todo:
        log.info("est: nothing left to score in shard %d/%d", *shard)
        return counts, {}
    scorer = _make_scorer(cfg, model_dirs, device)
    bundles = {name: load_bundle(p, device=device) for name, p in model_dirs.items()
               if any(s.model == name for s in systems)}
    world = WorldProsodyBaseline(cfg.baseline.f0, cfg.baseline.tempo, cfg.baseline.max_tempo_change,
                                 cfg.baseline.f0_backend, cfg.baseline.f0_method)
    bank = NoiseBank(cfg.noise.folder or None, cfg.noise.color, cfg.noise.seed) if cfg.noise.snr_db else None
    backends = {**scorer.backends, **({"noise": bank.name} if bank else {})}
    corpus = _Corpus(manifests)
    for pid in todo:  # every id must resolve before any work starts
        corpus.record(by_id[pid][1]["source"], pid, "source")
        corpus.record(by_id[pid][1]["reference"], pid, "reference")
    total = sum(len(v) for v in todo.values())
    t0 = time.perf_counter()
    log.info("est: %d pairs (%d scores) to do in shard %d/%d", len(todo), total, *shard)
    with open(path, "a", encoding="utf-8") as f:
        if f.tell() and not _ends_with_newline(path):  # a line cut by a kill: end it, so the next one parses
            f.write("\n")
        for finished, (pid, items) in enumerate(todo.items(), 1):
            setting, pair = by_id[pid]
            for system, snr in items:
                rec = _score_one(cfg, out, scorer, corpus, bundles, world, bank, system, snr, setting, pair)
                if rec["status"] != "ok":
                    counts["failed"] += 1
                f.write(json.dumps(rec, ensure_ascii=False, allow_nan=False, default=_json_default) + "\n")
                f.flush()
                os.fsync(f.fileno())
                counts["scored"] += 1
            if on_pair is not None:
                on_pair(finished)
            if progress_every and finished % progress_every == 0:
                rate = (time.perf_counter() - t0) / counts["scored"]
                log.info("est: %d/%d pairs (%.2f s a score, about %.0f s left)", finished, len(todo), rate,
                         rate * (total - counts["scored"]))
    return counts, backends


SHARD_START_WAIT_S = 60.0


def _wait_for_run_json(out: Path, timeout: float = SHARD_START_WAIT_S) -> None:
    """Shards of a SLURM array start together: a folder that is not empty but has no run.json yet is being set
    up by another shard; wait (up to ``timeout`` s) for its run.json instead of refusing the folder."""
    deadline = time.monotonic() + timeout
    while (out.is_dir() and any(out.iterdir()) and not (out / "run.json").exists()
           and time.monotonic() < deadline):
        time.sleep(0.5)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _score_one(cfg: EstConfig, out: Path, scorer: Scorer, corpus: _Corpus, bundles: Mapping[str, Any],
               world: Any, bank: Any, system: System, snr: float | None, setting: str,
               pair: Mapping[str, Any]) -> dict[str, Any]:
    """Convert one pair with one system (at one noise level) and measure it -> the scores line (status ok|error)."""
    from emotk.data.audio import save_audio
    from emotk.eval.baselines import copy_source
    from emotk.models.zest import infer

    pid = pair["id"]
    src_rec = corpus.record(pair["source"], pid, "source")
    rec: dict[str, Any] = {"format": SCORE_FORMAT, "key": score_key(system.name, snr, pid), "system": system.name,
                           "noise_db": snr, "setting": setting, "pair": pid, "source": pair["source"],
                           "reference": pair["reference"], "source_emotion": pair["source_emotion"],
                           "reference_emotion": pair["reference_emotion"]}
    t0 = time.perf_counter()
    try:
        src = infer.check_input(corpus.audio(pair["source"]), f"source {pair['source']}")
        ref = infer.check_input(corpus.audio(pair["reference"]), f"reference {pair['reference']}")
        noisy = src if snr is None else bank.add(src, snr, key=pid)
        transcript = src_rec.get(cfg.measures.transcript_field)
        if isinstance(transcript, str) and transcript.strip():
            origin = "manifest"
        else:
            transcript, origin = scorer.asr_of(pair["source"], src)["text"], "asr"
        info: dict[str, Any] = {}
        if system.kind == "copy-source":
            wav, info = copy_source(noisy, ref)
        elif system.kind == "world-baseline":
            wav, info = world.convert(noisy, ref)
        else:
            bundle = bundles[system.model]
            # a source's analysis serves every pair that uses it (noisy sources: one per pair and SNR); its F0
            # track is made only when the bundle calibrates the predicted F0 level (transfer.f0_level: source)
            key = (system.model, "source", pair["source"]) if snr is None else (system.model, "source", pid, snr)
            sa = corpus.analysis.get_or(key, lambda: infer.analyse_source(bundle, noisy, f0=False))
            ra = corpus.analysis.get_or((system.model, pair["reference"]),
                                        lambda: infer.analyse_reference(bundle, ref))
            conv = infer.convert(bundle, sa, ra, duration_predictor=system.variant != "fixed-durations")
            wav = infer.synthesise(bundle, sa, ra, conv, cfg.synth or bundle.config.transfer.synth)
            info = {"frames_source": int(sa.durations.sum()), "frames_converted": int(conv.durations.sum())}
            if sa.f0_level_factor is not None:
                info["f0_level_factor"] = sa.f0_level_factor
        wav = infer.check_input(wav, f"{system.name} output for pair {pid}")
        rec.update(status="ok", **scorer.score(wav, pair["source"], src, pair["reference"], ref, transcript),
                   transcript_from=origin, seconds_out=round(wav.size / SAMPLE_RATE, 3), **info)
        if cfg.save_audio:
            name = f"{pid}.wav" if snr is None else f"{pid}@{float(snr):g}dB.wav"
            save_audio(out / "audio" / system.name.replace(":", "_") / name, wav, SAMPLE_RATE)
    except (AudioError, DataError) as e:
        rec.update(status="error", error=str(e))
        log.warning("est: %s %s: %s", system.name, pid, e)
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    return rec


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


__all__ = ["EstConfig", "EstMeasures", "EstNoise", "EstBaseline", "System", "Scorer", "TASK", "build_results",
           "choose_asr", "make_plan", "parse_models", "parse_systems", "planned_keys", "prepare_pairs", "read_scores",
           "run_est", "score_key"]
