"""SER's per-utterance feature cache: subsets and supersets reuse stored utterances, edited audio is encoded again,
interrupted or concurrent extraction stays consistent, and ``ser evaluate`` / ``ser predict`` read the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, write_wav

from emotk.data.manifest import Manifest
from emotk.models.ser import features as ser_features
from emotk.models.ser.features import SerFeatures, ensure_features

CFG = SerFeatures(upstream="lld", dtype="float16", max_seconds=30.0, min_seconds=1.0, lld={"normalize": "none"})
REPO = Path(__file__).resolve().parent.parent
BUILD = ser_features.build_feature_fn  # the real front-end (tests count calls through a wrapper)


def _records(folder: Path, n: int, start: int = 0) -> list[dict]:
    recs = []
    for i in range(start, start + n):
        p = write_wav(folder / f"u{i}.wav", seconds=0.5, freq=120 + 35 * i)
        recs.append({"id": f"x-{i}", "path": str(p), "dataset": "x", "duration": 0.5,
                     "emotion": ["angry", "sad"][i % 2], "split": ["train", "train", "dev", "test"][i % 4]})
    return recs


def _manifest(recs: list[dict], path: Path) -> Manifest:
    return Manifest.from_records(recs, path)


@pytest.fixture
def counted(monkeypatch):
    """Count the utterances (by call) that reach the real SER front-end."""
    seen: list[int] = []
    real = ser_features.build_feature_fn

    def build(cfg, device="cpu"):
        fn = real(cfg, device)

        def wrapped(wavs):
            seen.append(len(wavs))
            return fn(wavs)

        return wrapped

    monkeypatch.setattr(ser_features, "build_feature_fn", build)
    return seen


def _fresh(wav_path: Path) -> np.ndarray:
    from emotk.data.audio import load_audio

    return BUILD(CFG)([load_audio(wav_path, sr=16000)])[0]["hidden"]


def test_subset_reuses_everything_and_superset_encodes_only_the_new(tmp_path, counted):
    recs = _records(tmp_path / "audio", 6)
    full, s1 = ensure_features(_manifest(recs, tmp_path / "all.jsonl"), CFG, tmp_path / "feat")
    assert s1["count"] == 6 and s1["reused"] == 0 and sum(counted) == 6
    # a subset (e.g. one class only): nothing encoded, the same arrays
    counted.clear()
    sub, s2 = ensure_features(_manifest(recs[::2], tmp_path / "sub.jsonl"), CFG, tmp_path / "feat")
    assert s2["count"] == 0 and s2["reused"] == 3 and counted == []
    assert sub.ids() == ["x-0", "x-2", "x-4"] and "x-1" not in sub and len(sub) == 3
    assert sub.path == full.path and sub.meta["config_hash"] == full.meta["config_hash"]
    np.testing.assert_array_equal(sub.get("x-2", "hidden"), full.get("x-2", "hidden"))
    np.testing.assert_array_equal(sub.get("x-2", "hidden"), _fresh(Path(recs[2]["path"])))
    # a superset: only the two new utterances are encoded
    more = recs + _records(tmp_path / "audio", 2, start=6)
    sup, s3 = ensure_features(_manifest(more, tmp_path / "sup.jsonl"), CFG, tmp_path / "feat")
    assert s3["count"] == 2 and s3["reused"] == 6 and sum(counted) == 2 and len(sup) == 8
    np.testing.assert_array_equal(sup.get("x-7", "hidden"), _fresh(Path(more[7]["path"])))
    # one folder per feature config, no per-utterance-set folders
    assert [p.name for p in (tmp_path / "feat").iterdir()] == [full.path.name]
    # another config is another cache
    other = SerFeatures(**{**CFG.__dict__, "min_seconds": 2.0})
    _, s4 = ensure_features(_manifest(recs[:1], tmp_path / "one.jsonl"), other, tmp_path / "feat")
    assert s4["count"] == 1 and len(list((tmp_path / "feat").iterdir())) == 2


def test_edited_audio_is_encoded_again_touched_or_moved_audio_is_not(tmp_path, counted):
    recs = _records(tmp_path / "audio", 3)
    m = _manifest(recs, tmp_path / "m.jsonl")
    before, _ = ensure_features(m, CFG, tmp_path / "feat")
    old = before.get("x-1", "hidden")
    path = Path(recs[1]["path"])
    # edited: same id, same path, same size, new bytes (and a later mtime, as any write gives)
    mtime = path.stat().st_mtime_ns
    write_wav(path, seconds=0.5, freq=900)
    os.utime(path, ns=(mtime + 2_000_000_000, mtime + 2_000_000_000))
    counted.clear()
    after, s = ensure_features(m, CFG, tmp_path / "feat")
    assert s["count"] == 1 and sum(counted) == 1
    new = after.get("x-1", "hidden")
    assert not np.array_equal(new, old)
    np.testing.assert_array_equal(new, _fresh(path))
    np.testing.assert_array_equal(after.get("x-0", "hidden"), before.get("x-0", "hidden"))
    # touched (new mtime, same bytes): the sha256 matches, nothing encoded
    os.utime(path, ns=(mtime + 9_000_000_000, mtime + 9_000_000_000))
    counted.clear()
    _, s = ensure_features(m, CFG, tmp_path / "feat")
    assert s["count"] == 0 and counted == []
    # the corpus copied elsewhere under other ids: found by content
    import shutil

    shutil.copytree(tmp_path / "audio", tmp_path / "copy")
    moved = [{**r, "id": "y" + r["id"][1:], "path": str(tmp_path / "copy" / Path(r["path"]).name)} for r in recs]
    view, s = ensure_features(_manifest(moved, tmp_path / "moved.jsonl"), CFG, tmp_path / "feat")
    assert s["count"] == 0 and counted == []
    np.testing.assert_array_equal(view.get("y-1", "hidden"), new)
    # a segment of a stored file is other audio: encoded
    seg = [{**recs[0], "id": "x-0-a", "start": 0.0, "end": 0.25}]
    view, s = ensure_features(_manifest(seg, tmp_path / "seg.jsonl"), CFG, tmp_path / "feat")
    assert s["count"] == 1 and view.get("x-0-a", "hidden").shape == (1, 50, 256)  # padded to 1 s
    # a deleted file is not served from the cache: the usual error (or a skip)
    Path(recs[2]["path"]).unlink()
    from emotk.errors import AudioError

    with pytest.raises(AudioError):
        ensure_features(m, CFG, tmp_path / "feat")
    view, s = ensure_features(m, CFG, tmp_path / "feat", skip_bad=True)
    assert s["skipped"] == ["x-2"] and view.ids() == ["x-0", "x-1"] and not s["complete"]


def test_ctrl_c_keeps_what_was_encoded(tmp_path):
    recs = _records(tmp_path / "audio", 5)
    m = _manifest(recs, tmp_path / "m.jsonl")
    real = BUILD(CFG)
    calls: list[int] = []

    def flaky(wavs):
        calls.append(len(wavs))
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(wavs)

    with pytest.raises(KeyboardInterrupt):
        ensure_features(m, CFG, tmp_path / "feat", extractor=flaky, batch_size=1, chunk_size=64)
    calls.clear()
    view, s = ensure_features(m, CFG, tmp_path / "feat", extractor=flaky, batch_size=1)
    assert s["reused"] == 3 and s["count"] == 2 and len(calls) == 2 and len(view) == 5


_WORKER = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, {repo!r})
    from emotk.data.manifest import Manifest
    from emotk.models.ser import features as F
    cfg = F.SerFeatures(upstream="lld", dtype="float16", max_seconds=30.0, min_seconds=1.0,
                        lld={{"normalize": "none"}})
    m = Manifest.load(sys.argv[1])
    real = F.build_feature_fn(cfg)
    kill_after = int(sys.argv[3])
    done = []

    def fn(wavs):
        if kill_after and len(done) >= kill_after:
            os._exit(137)  # as SIGKILL: no cleanup, no flush
        done.extend(wavs)
        time.sleep(0.05)
        return real(wavs)

    view, s = F.ensure_features(m, cfg, sys.argv[2], extractor=fn, batch_size=1, chunk_size=2)
    print(json.dumps({{"count": s["count"], "ids": view.ids()}}))
""")


def _worker(tmp_path: Path, manifest: Path, root: Path, kill_after: int = 0) -> subprocess.Popen:
    script = tmp_path / "worker.py"
    script.write_text(_WORKER.format(repo=str(REPO)))
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, str(script), str(manifest), str(root), str(kill_after)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_killed_extraction_resumes_and_debris_is_ignored(tmp_path, counted):
    recs = _records(tmp_path / "audio", 7)
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    m = Manifest.load(path)
    p = _worker(tmp_path, path, tmp_path / "feat", kill_after=5)  # killed while filling its third chunk
    _, err = p.communicate(timeout=120)
    assert p.returncode == 137, err
    counted.clear()
    view, s = ensure_features(m, CFG, tmp_path / "feat")
    assert s["reused"] == 4 and s["count"] == 3 and sum(counted) == 3 and len(view) == 7
    # what a writer killed between its data file and its index (or mid-write) leaves is ignored, and removed
    # by a later writer once old
    folder = view.path
    orphan = folder / "chunk-19990101T000000-host-1-deadbeef.safetensors"
    orphan.write_bytes(b"half")
    temp = folder / ".chunk-19990101T000000-host-1-cafe.json.abc.tmp.json"
    temp.write_text("{")
    again, s = ensure_features(m, CFG, tmp_path / "feat")
    assert s["count"] == 0 and orphan.exists() and temp.exists()
    for f in (orphan, temp):
        os.utime(f, (1, 1))
    more = recs + _records(tmp_path / "audio", 1, start=7)
    _, s = ensure_features(_manifest(more, tmp_path / "more.jsonl"), CFG, tmp_path / "feat")
    assert s["count"] == 1 and not orphan.exists() and not temp.exists()


def test_two_processes_extracting_at_once_do_not_corrupt_the_cache(tmp_path, counted):
    recs = _records(tmp_path / "audio", 8)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for path, part in ((a, recs[:6]), (b, recs[2:])):  # overlapping: x-2..x-5 in both
        path.write_text("".join(json.dumps(r) + "\n" for r in part))
    procs = [_worker(tmp_path, a, tmp_path / "feat"), _worker(tmp_path, b, tmp_path / "feat")]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert json.loads(outs[0][0])["ids"] == [f"x-{i}" for i in range(6)]
    assert json.loads(outs[1][0])["ids"] == [f"x-{i}" for i in range(2, 8)]
    counted.clear()
    view, s = ensure_features(_manifest(recs, tmp_path / "all.jsonl"), CFG, tmp_path / "feat")
    assert s["count"] == 0 and counted == [] and len(view) == 8
    for r in recs:
        np.testing.assert_array_equal(view.get(r["id"], "hidden"), _fresh(Path(r["path"])))


def test_features_info_reads_the_per_utterance_cache(tmp_path):
    recs = _records(tmp_path / "audio", 3)
    ensure_features(_manifest(recs, tmp_path / "m.jsonl"), CFG, tmp_path / "feat")
    code, out, err = run_cli("--json", "features", "info", tmp_path / "feat")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["kind"] == "ser-input" and row["ids_stored"] == 3 and row["complete"] is True


# ---- ser evaluate / ser predict --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lld_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("serc")
    recs = _records(root / "audio", 12)
    manifest = root / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = root / "run"
    code, _, err = run_cli("ser", "train", "-c", "ser/tiny", "--data", manifest, "--set", "upstream.name=lld",
                           "--set", "upstream.dtype=float16", "--set", "model.feature_norm=true",
                           "--set", "train.epochs=2", "-o", out)
    assert code == 0, err
    return {"root": root, "records": recs, "manifest": manifest, "out": out}


def _predict(*args: str) -> list[dict]:
    code, out, err = run_cli("ser", "predict", *args)
    assert code == 0, err
    return [json.loads(x) for x in out.splitlines()]


def test_predict_reads_the_run_cache_and_matches_fresh_extraction(lld_run, counted):
    out, manifest = lld_run["out"], lld_run["manifest"]
    assert (out / "features").is_dir() and not list((out / "features").glob("set-*"))
    cached = _predict("-m", str(out), str(manifest))
    assert counted == []  # every utterance came from the training cache
    fresh = _predict("-m", str(out), str(manifest), "--no-cache")
    assert sum(counted) == 12
    assert cached == fresh and len(cached) == 12
    # the export of a single run finds the experiment's cache too
    counted.clear()
    assert _predict("-m", str(out / "runs" / "split-seed0" / "export"), str(manifest)) == fresh and counted == []
    # --cache DIR: new audio is encoded once, stored, and read back the next time
    wav = write_wav(lld_run["root"] / "new" / "n.wav", seconds=0.7, freq=333)
    counted.clear()
    first = _predict("-m", str(out), str(wav), "--cache", str(lld_run["root"] / "pc"))
    assert sum(counted) == 1
    counted.clear()
    second = _predict("-m", str(out), str(wav), "--cache", str(lld_run["root"] / "pc"))
    assert counted == [] and second == first
    assert _predict("-m", str(out), str(wav), "--no-cache") == first
    code, _, err = run_cli("ser", "predict", "-m", str(out), str(wav), "--no-cache", "--cache", "x")
    assert code != 0 and "--no-cache" in err


def test_evaluate_other_data_encodes_only_what_is_missing(lld_run, counted):
    root, recs = lld_run["root"], lld_run["records"]
    extra = _records(root / "audio2", 2, start=20)
    other = root / "other.jsonl"
    other.write_text("".join(json.dumps(r) + "\n" for r in recs[:6] + extra))
    counted.clear()
    code, out, err = run_cli("--json", "ser", "evaluate", lld_run["out"], "--data", other, "--split", "all")
    assert code == 0, err
    assert sum(counted) == 2  # the 6 training utterances came from the cache
    result = json.loads(out)
    # the same scores as a fresh extraction into another cache
    counted.clear()
    code, out2, err = run_cli("--json", "ser", "evaluate", lld_run["out"], "--data", other, "--split", "all",
                              "--overwrite", "--cache", root / "elsewhere")
    assert code == 0, err
    assert sum(counted) == 8 and json.loads(out2)["aggregate"] == result["aggregate"]


def test_predict_score_uses_the_same_cache_as_predict(lld_run, counted):
    out, manifest, root = lld_run["out"], lld_run["manifest"], lld_run["root"]

    def score(name: str, *args: str) -> tuple[dict, list[dict]]:
        dest = root / "scored" / f"{name}.jsonl"
        code, stdout, err = run_cli("--json", "ser", "predict", "-m", str(out), "--score", "-o", str(dest), *args)
        assert code == 0, err
        return json.loads(stdout), [json.loads(x) for x in dest.read_text().splitlines()]

    counted.clear()
    cached, cached_rows = score("run-cache", str(manifest))
    assert counted == [] and cached["scored"] == 12  # every utterance came from the training cache
    assert cached_rows == _predict("-m", str(out), str(manifest)) and counted == []
    fresh, fresh_rows = score("fresh", str(manifest), "--no-cache")
    assert sum(counted) == 12 and fresh["metrics"] == cached["metrics"] and fresh_rows == cached_rows
    # --cache DIR: the labelled new utterance is encoded once, stored, and read back (by plain predict too)
    wav = write_wav(root / "new-scored" / "s.wav", seconds=0.6, freq=271)
    one = root / "one.jsonl"
    one.write_text(json.dumps({"id": "s-0", "path": str(wav), "dataset": "x", "duration": 0.6, "emotion": "angry"})
                   + "\n")
    counted.clear()
    first, first_rows = score("dir1", str(one), "--cache", str(root / "sc"))
    assert sum(counted) == 1 and first["scored"] == 1 and first_rows[0]["label"] == "angry"
    counted.clear()
    second, second_rows = score("dir2", str(one), "--cache", str(root / "sc"))
    assert counted == [] and second_rows == first_rows
    assert _predict("-m", str(out), str(one), "--cache", str(root / "sc")) == first_rows and counted == []
    code, _, err = run_cli("ser", "predict", "-m", str(out), str(one), "--score", "-o", str(root / "x.jsonl"),
                           "--no-cache", "--cache", "x")
    assert code != 0 and "--no-cache" in err and not (root / "x.jsonl").exists()
