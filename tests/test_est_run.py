"""``emotk evaluate est`` end to end (emotk.eval.est) and the training-free floors (emotk.eval.baselines).

The integration tests build a tiny espeak-ng corpus (4 speakers x 4 styles x 2 sentences; skipped without espeak-ng)
and a one-epoch S2S-ZEST bundle on it, then evaluate SSST + A2A pairs with every system through the real CLI:
report layout, the floors' invariants, resume after an interruption, and shard parts merging into one table.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import have_espeak, json_out, run_cli, tiny_zest_bundle

SR = 16000


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: 1 thread (see conftest.one_thread)


def _vowel(seconds: float, f0_of_t, sr: int = SR) -> np.ndarray:
    """A glottal-pulse vowel with a time-varying F0 (Hz function of time) and two formants."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(f0_of_t(t)) / sr
    pulses = np.maximum(np.sin(phase), 0) ** 8
    from scipy.signal import lfilter

    y = pulses
    for f, bw in ((700, 90), (1200, 110)):
        r = np.exp(-np.pi * bw / sr)
        y = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / sr), r * r], y)
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


# ---- baselines (no corpus) -----------------------------------------------------------------------------------------
def test_prosody_stats_and_log_f0_mapping():
    from emotk.eval.baselines import map_log_f0, prosody_stats, stretch_track, tempo_ratio

    f0 = np.array([0, 100, 110, 0, 0, 120, 130, 125, 0, 90, 0], dtype=float)  # runs of 2, 3 and 1 voiced frames
    st = prosody_stats(f0)
    voiced = np.log(f0[f0 > 0])
    assert st.log_f0_mean == pytest.approx(voiced.mean()) and st.log_f0_std == pytest.approx(voiced.std())
    assert st.syllable_rate == pytest.approx(2 / (9 * 320 / 16000))  # 2 runs >= 2 frames over frames 1..9
    target = prosody_stats(np.array([0, 200, 260, 0, 240, 230, 0], dtype=float))
    moved = map_log_f0(f0, st, target)
    assert np.array_equal(moved > 0, f0 > 0)
    assert np.log(moved[moved > 0]).mean() == pytest.approx(target.log_f0_mean)
    assert np.log(moved[moved > 0]).std() == pytest.approx(target.log_f0_std)
    assert prosody_stats(np.zeros(5)).log_f0_mean is None
    slow = prosody_stats(np.repeat([100, 0, 100], 10).astype(float))  # 2 runs over 30 frames: 3.3 /s
    assert slow.syllable_rate == pytest.approx(2 / 0.6)
    assert tempo_ratio(st, st) == 1.0
    assert tempo_ratio(st, slow, max_change=0.4) == pytest.approx(1.4)  # 11.1 /s -> 3.3 /s: stretch, clamped
    assert tempo_ratio(slow, st, max_change=0.4) == pytest.approx(0.6)
    assert tempo_ratio(slow, prosody_stats(np.repeat([100, 0, 100], [10, 6, 10]).astype(float))) == \
        pytest.approx((2 / 0.6) / (2 / 0.52))
    assert tempo_ratio(prosody_stats(np.zeros(3)), st) == 1.0  # unknown rate: no stretch
    stretched = stretch_track(np.array([0, 100, 200, 0], dtype=float), 8)
    assert stretched.shape == (8,) and stretched[0] == 0 and stretched[-1] == 0
    assert np.all(np.diff(stretched[stretched > 0]) >= 0)  # log-F0 interpolated monotonically 100 -> 200


def test_world_baseline_moves_f0_and_tempo_toward_the_reference():
    from emotk.eval.baselines import WorldProsodyBaseline, copy_source
    from emotk.features.f0 import F0Config, extract_f0

    src = _vowel(2.0, lambda t: 110 + 10 * np.sin(2 * np.pi * 2 * t))
    ref = _vowel(1.5, lambda t: 210 + 30 * np.sin(2 * np.pi * 3 * t))
    base = WorldProsodyBaseline()
    out, info = base.convert(src, ref)
    cfg = F0Config(backend="world")
    f_src, f_ref, f_out = (extract_f0(x, SR, cfg) for x in (src, ref, out))

    def mean_log(f):
        return float(np.log(f[f > 0]).mean())

    assert abs(mean_log(f_out) - mean_log(f_ref)) < 0.1 < abs(mean_log(f_src) - mean_log(f_ref))
    assert out.size == int(round(info["tempo_ratio"] * (src.size // 320))) * 320
    assert 0.6 <= info["tempo_ratio"] <= 1.4
    flat, flat_info = WorldProsodyBaseline(f0=False, tempo=False).convert(src, ref)
    assert flat.size == src.size // 320 * 320 and flat_info["tempo_ratio"] == 1.0
    assert abs(mean_log(extract_f0(flat, SR, cfg)) - mean_log(f_src)) < 0.05
    same, _ = copy_source(src, ref)
    assert np.array_equal(same, src) and same is not src


def test_plan_keys_limits_and_system_names():
    from emotk.errors import ConfigError, UsageError
    from emotk.eval.est import parse_models, parse_systems, planned_keys, score_key
    from emotk.eval.pairs import spread

    assert spread([str(i) for i in range(10)], 4) == ["0", "3", "6", "9"] and spread(["a"], None) == ["a"]
    models = parse_models(["/b/one", "noadv=/b/two"])
    assert list(models) == ["s2s-zest", "noadv"] and models["noadv"] == Path("/b/two")
    with pytest.raises(UsageError, match="twice"):
        parse_models(["a=/x", "a=/y"])
    systems = parse_systems([], models)
    assert [s.name for s in systems] == ["s2s-zest", "noadv", "world-baseline", "copy-source"]
    ablation = parse_systems(["s2s-zest:fixed-durations", "copy-source"], models)
    assert ablation[0].kind == "zest" and ablation[0].variant == "fixed-durations"
    with pytest.raises(ConfigError, match="neither a baseline"):
        parse_systems(["other"], models)
    with pytest.raises(ConfigError, match="unknown variant"):
        parse_systems(["s2s-zest:no-f0"], models)
    plan = {"settings": {"SSST": {"selected": ["p1", "p2"]}}, "systems": ["a", "b"], "noise": [None, 20.0],
            "noise_systems": ["a"]}
    keys = planned_keys(plan)
    assert len(keys) == 2 * (2 + 1) and ("a", 20.0, "p2") in keys and ("b", 20.0, "p1") not in keys
    assert score_key("a", None, "p1") == "a|clean|p1" and score_key("a", 20.0, "p1") == "a|20dB|p1"


# ---- end to end on a tiny corpus -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    if not have_espeak():
        pytest.skip("espeak-ng is not installed")
    root = tmp_path_factory.mktemp("est")
    return {"root": root, **tiny_zest_bundle(root)}


def _est(tiny, out, *extra):
    return run_cli("--json", "evaluate", "est", "--model", tiny["bundle"], "--data", tiny["manifest"], "-o", out,
                   "-s", "SSST", "-s", "A2A", "--limit", "4", "--set", "pairs.text_field=sentence",
                   "--set", "runtime.threads=1", *extra)


def _scores(out: Path) -> dict[str, dict]:
    from emotk.eval.est import read_scores

    drop = ("seconds",)
    return {k: {f: v for f, v in r.items() if f not in drop} for k, r in read_scores(out).items()}


@pytest.fixture(scope="module")
def full(tiny):
    out = tiny["root"] / "full"
    code, stdout, err = _est(tiny, out)
    assert code == 0, err[-3000:]
    return {"out": out, "result": json_out(stdout)}


def test_report_layout_and_floor_invariants(tiny, full):
    out, r = full["out"], full["result"]
    assert r["coverage"] == {"scored": 24, "planned": 24, "complete": True}  # 8 pairs x 3 systems
    results = json.loads((out / "report" / "results.json").read_text())
    assert set(results["systems"]) == {"s2s-zest", "world-baseline", "copy-source"}
    for system, settings in results["systems"].items():
        assert set(settings) == {"SSST", "A2A"} and all(v["n"] == 4 and v["n_failed"] == 0 for v in settings.values())
    copy = results["systems"]["copy-source"]["SSST"]
    assert copy["spk_sim"] == pytest.approx(1.0, abs=1e-5) and copy["emo_sim_source"] == pytest.approx(1.0, abs=1e-5)
    zest = results["systems"]["s2s-zest"]["SSST"]
    assert zest["spk_sim"] < 1.0 and 0.0 <= zest["wer"] and zest["cer"] is not None
    assert set(results["matrices"]) == set(results["systems"])
    m = results["matrices"]["copy-source"]
    assert m["labels"] == ["neutral", "angry", "happy", "sad"] and len(m["vs_reference"]) == 4
    filled = [(i, j) for i, row in enumerate(m["vs_source"]) for j, v in enumerate(row) if v is not None]
    assert filled and all(m["vs_source"][i][j] == pytest.approx(1.0, abs=1e-5) and i != j for i, j in filled)
    prov = results["provenance"]
    assert prov["bundle_sha256"] and prov["pairs"]["SSST"]["count"] == 4 and prov["pairs"]["SSST"]["of"] == 24
    assert prov["backends"]["speaker"] == "resemblyzer" and prov["backends"]["emotion"].startswith("zest-emotion")
    assert prov["backends"]["asr"].startswith("faster-whisper:whisper-tiny.en-ct2")
    table = (out / "report" / "table.md").read_text()
    assert "| System | Metric | SSST | A2A | Avg. |" in table and "| copy-source | Spk-Sim ↑ | 1.00 |" in table
    assert (out / "report" / "results.csv").is_file() and list((out / "report").glob("*.png"))
    pair_file = out / "pairs" / "SSST.jsonl"
    from emotk.eval.pairs import read_pairs

    header, pairs = read_pairs(pair_file)
    assert header["count"] == len(pairs) == 4 * 2 * 3  # speakers x sentences x non-neutral styles
    scored = {r["pair"] for r in _scores(out).values() if r["setting"] == "SSST"}
    assert scored == {pairs[i]["id"] for i in (0, 8, 15, 23)}  # --limit 4: evenly spaced over the file
    again = _est(tiny, out)
    assert again[0] == 1 and "--overwrite or --resume" in again[2]


def test_resume_after_an_interruption_does_not_redo_pairs(tiny, full):
    from emotk.core.config import resolve
    from emotk.eval.est import EstConfig, run_est
    from emotk.recipes import find_config

    out = tiny["root"] / "killed"
    resolved = resolve(EstConfig, "evaluate.est", find_config("evaluate/est"),
                       ["settings=[SSST,A2A]", "limit=4", "pairs.text_field=sentence", "runtime.threads=1"])

    def stop_after_three(done: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_est(resolved, out, models=[tiny["bundle"]], data=[tiny["manifest"]], on_pair=stop_after_three)
    partial = _scores(out)
    assert len(partial) == 3 * 3  # three pairs finished, every system
    (scores_file,) = (out / "scores").glob("*.jsonl")
    with open(scores_file, "a") as f:  # a kill in the middle of writing a line
        f.write('{"format": 1, "key": "s2s-zest|clean|')
    calls = []
    result = run_est(resolved, out, models=[tiny["bundle"]], data=[tiny["manifest"]], resume=True,
                     on_pair=calls.append)
    assert result["skipped_done"] == 9 and result["scored"] == 15 and len(calls) == 5
    resumed = _scores(out)
    assert set(resumed) == set(_scores(full["out"]))
    header, *lines = scores_file.read_text().splitlines()
    assert json.loads(header)["journal"] == "est-scores"  # an emotk.core.journal: header line, then records
    # the cut line was cut off when the journal was resumed (core.journal's torn-last-line policy)
    assert len(lines) == 9 + 15 and not any(x.startswith('{"format": 1, "key"') for x in lines)
    assert all(json.loads(x)["status"] == "ok" for x in lines)
    for key, rec in resumed.items():  # the same numbers as the uninterrupted run
        ref = _scores(full["out"])[key]
        for field in ("emo_sim", "spk_sim", "hypothesis", "rate_converted"):
            assert rec[field] == pytest.approx(ref[field], abs=1e-4) if isinstance(rec[field], float) \
                else rec[field] == ref[field], (key, field)


def test_shards_merge_into_the_table_of_one_run(tiny, full):
    out = tiny["root"] / "sharded"
    first = _est(tiny, out, "--shard", "0/2")
    assert first[0] == 0, first[2][-2000:]
    part = json_out(first[1])
    assert part["coverage"]["complete"] is False and 0 < part["coverage"]["scored"] < 24
    second = _est(tiny, out, "--shard", "1/2")
    assert second[0] == 0, second[2][-2000:]
    assert json_out(second[1])["coverage"] == {"scored": 24, "planned": 24, "complete": True}
    assert sorted(p.name for p in (out / "scores").iterdir()) == ["scores.shard-0-of-2.jsonl",
                                                                  "scores.shard-1-of-2.jsonl"]
    merged = json.loads((out / "report" / "results.json").read_text())
    single = json.loads((full["out"] / "report" / "results.json").read_text())
    for section in ("systems", "matrices"):
        assert _close(merged[section], single[section]), section
    code, stdout, _ = run_cli("--json", "evaluate", "est", "--report-only", "-o", out)
    assert code == 0 and json_out(stdout)["coverage"]["complete"]
    code, _, err = _est(tiny, out, "--shard", "0/2")  # its scores exist: continue with --resume
    assert code == 2 and "--resume" in err
    assert _est(tiny, out, "--shard", "0/2", "--resume")[0] == 0


def _close(a, b) -> bool:
    """Nested dicts/lists equal with floats within 1e-4."""
    if isinstance(a, dict):
        return set(a) == set(b) and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-4
    return a == b


def test_noise_rows_and_the_fixed_duration_ablation(tiny):
    out = tiny["root"] / "noise"
    code, stdout, err = run_cli(
        "--json", "evaluate", "est", "--model", tiny["bundle"], "--data", tiny["manifest"], "-o", out, "-s", "SSST",
        "--limit", "2", "--set", "systems=[s2s-zest:fixed-durations,copy-source]", "--set", "noise.snr_db=[10]",
        "--set", "noise.systems=[copy-source]", "--set", "runtime.threads=1")
    assert code == 0, err[-3000:]
    assert json_out(stdout)["coverage"] == {"scored": 6, "planned": 6, "complete": True}  # 2 x 2 clean + 2 noisy
    results = json.loads((out / "report" / "results.json").read_text())
    assert set(results["noise"]) == {"copy-source@10dB"}
    assert results["provenance"]["backends"]["noise"] == "generated:white"
    clean, noisy = results["systems"]["copy-source"]["SSST"], results["noise"]["copy-source@10dB"]["SSST"]
    assert noisy["spk_sim"] < clean["spk_sim"] and noisy["n"] == 2
    fixed = [r for r in _scores(out).values() if r["system"] == "s2s-zest:fixed-durations"]
    assert len(fixed) == 2 and all(r["frames_converted"] == r["frames_source"] for r in fixed)
    assert "## Additive-noise robustness" in (out / "report" / "table.md").read_text()


def test_a_bundle_with_source_f0_level_is_evaluated_as_it_transfers(tiny, tmp_path):
    import shutil

    bundle = tmp_path / "bundle-source-level"
    shutil.copytree(tiny["bundle"], bundle)
    info = json.loads((bundle / "bundle.json").read_text())
    info["config"]["transfer"]["f0_level"] = "source"
    (bundle / "bundle.json").write_text(json.dumps(info))
    out = tmp_path / "est"
    code, stdout, err = run_cli("--json", "evaluate", "est", "--model", bundle, "--data", tiny["manifest"], "-o", out,
                                "-s", "SSST", "--limit", "2", "--set", "systems=[s2s-zest]",
                                "--set", "runtime.threads=1")
    assert code == 0, err[-3000:]
    recs = list(_scores(out).values())
    # the source's F0 was tracked and its level factor computed (1.0 only when < 5 frames are voiced in both)
    assert len(recs) == 2 and all(isinstance(r.get("f0_level_factor"), float) and r["f0_level_factor"] > 0
                                  for r in recs)


def test_bad_inputs_are_one_line_errors(tiny, tmp_path):
    code, _, err = run_cli("evaluate", "est", "--data", tiny["manifest"], "-o", tmp_path / "x",
                           "--set", "systems=[s2s-zest]")
    assert code == 2 and "neither a baseline nor a --model name" in err
    code, _, err = run_cli("evaluate", "est", "--model", tmp_path, "--data", tiny["manifest"], "-o", tmp_path / "y")
    assert code == 1 and "not an S2S-ZEST model bundle" in err and "Traceback" not in err
    code, _, err = run_cli("evaluate", "est", "--model", tiny["bundle"], "-o", tmp_path / "z")
    assert code == 2 and "--data" in err and not (tmp_path / "z").exists()
    code, _, err = run_cli("evaluate", "est", "--model", tiny["bundle"], "--data", tiny["manifest"], "-s", "XYZ",
                           "-o", tmp_path / "w")
    assert code == 2 and "unknown setting 'XYZ'" in err
    code, _, err = run_cli("evaluate", "est", "--report-only", "-o", tmp_path / "none")
    assert code == 1 and "run.json" in err


def test_scores_files_tolerate_a_line_cut_by_a_kill(tmp_path):
    from emotk.eval.est import SCORE_FORMAT, SCORES_KIND, read_scores

    (tmp_path / "scores").mkdir()
    header = {"journal": SCORES_KIND, "version": 1, "format": SCORE_FORMAT}
    good = {"format": SCORE_FORMAT, "key": "a|clean|SSST-000001", "status": "ok", "emo_sim": 0.5}
    later = {**good, "emo_sim": 0.7}
    other = {"format": SCORE_FORMAT, "key": "a|clean|SSST-000002", "status": "error", "error": "silent"}
    text = "\n".join(json.dumps(x) for x in (header, good, other, later)) + "\n" + json.dumps(good)[:25]  # killed
    (tmp_path / "scores" / "scores.shard-0-of-2.jsonl").write_text(text)
    (tmp_path / "scores" / "notes.txt").write_text("not a scores file")
    found = read_scores(tmp_path)
    assert set(found) == {"a|clean|SSST-000001", "a|clean|SSST-000002"}
    assert found["a|clean|SSST-000001"]["emo_sim"] == 0.7  # the later line for a key wins
    assert read_scores(tmp_path / "missing") == {}


def test_results_use_one_label_set_and_tolerate_wordless_groups():
    from emotk.eval.est import build_results, score_key

    pairs = {"A2A-1": ("happy", "angry"), "A2A-2": ("sad", "happy"), "A2A-3": ("sad", "angry")}
    plan = {"settings": {"A2A": {"selected": list(pairs)}}, "systems": ["first", "second"], "noise": [None],
            "noise_systems": []}
    scores = {}
    for system in plan["systems"]:
        for pid, (src, ref) in pairs.items():
            ok = not (system == "first" and src == "sad")  # every 'sad' source of the first system failed
            rec = {"key": score_key(system, None, pid), "status": "ok" if ok else "error", "error": "silent",
                   "source_emotion": src, "reference_emotion": ref, "emo_sim": 0.5, "emo_sim_source": 0.25,
                   "spk_sim": 0.75, "transcript": "uh", "hypothesis": "um", "rate_reference": 3.0,
                   "rate_converted": 2.5}
            scores[rec["key"]] = rec
    results = build_results(plan, scores, {})
    first, second = results["matrices"]["first"], results["matrices"]["second"]
    assert first["labels"] == second["labels"] == ["angry", "happy", "sad"]  # the union over both systems
    assert np.isnan(first["vs_reference"][2]).all() and first["vs_reference"][1][0] == 0.5  # no sad row; happy->angry
    assert second["vs_reference"][2][0] == second["vs_reference"][2][1] == 0.5
    assert results["systems"]["first"]["A2A"]["n"] == 1 and results["systems"]["second"]["A2A"]["n"] == 3
    # the transcripts are fillers only (nothing left after the normaliser): no WER rather than an error
    assert results["systems"]["second"]["A2A"]["wer"] is None and results["systems"]["second"]["A2A"]["emo_sim"] == 0.5


def test_a_shard_waits_for_the_run_folder_another_shard_is_setting_up(tmp_path, monkeypatch):
    from emotk.eval.est import run as est  # the module that defines _wait_for_run_json

    out = tmp_path / "est"
    out.mkdir()
    (out / "log.txt").write_text("shard 0 is starting\n")  # not empty, no run.json yet
    clock = {"now": 0.0, "writes": 1}
    sleeps = []

    def fake_sleep(seconds):  # the other shard writes run.json after the waiting shard's third nap
        sleeps.append(seconds)
        clock["now"] += seconds
        if len(sleeps) == 3 and clock["writes"]:
            clock["writes"] -= 1
            (out / "run.json").write_text("{}")

    monkeypatch.setattr(est.time, "sleep", fake_sleep)
    monkeypatch.setattr(est.time, "monotonic", lambda: clock["now"])
    est._wait_for_run_json(out, timeout=30.0)
    assert len(sleeps) == 3  # it waited, and stopped waiting as soon as run.json appeared
    (out / "run.json").unlink()
    sleeps.clear()
    est._wait_for_run_json(out, timeout=2.0)  # a folder nobody sets up: gives up at the timeout
    assert sum(sleeps) == pytest.approx(2.0, abs=0.5) and not (out / "run.json").exists()
    sleeps.clear()
    est._wait_for_run_json(tmp_path / "missing", timeout=30.0)  # nothing to wait for: returns at once
    est._wait_for_run_json(tmp_path / "empty-not-created", timeout=30.0)
    assert sleeps == []
