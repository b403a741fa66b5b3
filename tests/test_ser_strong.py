"""emotk's strong SER recipe: mean + std pooling, linear head, layer choice, the late-best warning, the sample std
over fold means, and ``--search`` (chosen on the validation split only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import json_out, run_cli, write_wav

from emotk.errors import ConfigError


def _store(tmp_path: Path, ids: list[str], layers: int = 3, dim: int = 8, dtype=np.float16):
    from emotk.features.cache import FeatureCache
    from emotk.models.ser.task import FeatureStore

    rng = np.random.default_rng(0)
    cache = FeatureCache.create(tmp_path, "ser-input", {"test": 1}, ids, shard_size=4)
    for j, block in enumerate(cache.blocks()):
        cache.write_shard(j, {u: {"hidden": (3 + rng.standard_normal((layers, int(rng.integers(5, 40)), dim))
                                             * rng.uniform(0.5, 2.0)).astype(dtype)} for u in block})
    return FeatureStore(FeatureCache(cache.path))


def _task(store, ids, *overrides, speakers=None):
    from emotk.core.config import resolve
    from emotk.models.ser.config import SerConfig
    from emotk.models.ser.data import SerItem
    from emotk.models.ser.task import SerTask

    cfg = resolve(SerConfig, "ser.superb", None, ["model.head_hidden=16", *overrides]).config
    items = [SerItem(u, i % 2) for i, u in enumerate(ids)]
    return SerTask(cfg, {"train": items, "valid": items[:2], "test": items[2:4]}, store, classes=["a", "b"],
                   speakers=speakers)


@pytest.mark.parametrize("extra", [[], ["model.feature_norm=true"], ["data.speaker_norm=per-speaker"],
                                   ["model.feature_norm=true", "model.layers=[0,2]", "model.head=linear"],
                                   ["model.feature_norm=true", "model.layer_combine=concat"]])
def test_mean_std_statistics_items_give_the_frame_path_outputs(tmp_path, extra):
    """Two frames per layer (mean -/+ std) reproduce every frame's per-layer mean and std -- after any per-dim
    affine standardisation too -- so training on them is exact."""
    ids = [f"u{i}" for i in range(8)]
    store = _store(tmp_path, ids)
    speakers = {u: f"s{i % 3}" for i, u in enumerate(ids)}
    task = _task(store, ids, "model.pooling=mean_std", *extra, speakers=speakers)
    assert task.pooled == "mean_std"
    torch.manual_seed(0)
    model = task.build_model().eval()
    with torch.no_grad():
        model.layer_sum.logits.copy_(torch.linspace(-1.0, 1.5, model.layer_sum.num_layers))
    ds = task.train_dataset()
    pooled = task.collate([ds[i] for i in range(len(ds))])
    assert pooled["hidden"].shape == (8, 3, 2, 8) and pooled["lengths"].tolist() == [2] * 8
    from emotk.models.ser.normalize import normalize

    frames = []
    for u in ids:
        h = store.get(u)
        frames.append({"id": u, "target": 0, "hidden": torch.from_numpy(
            normalize(h, task.split_norm("train")[u]) if task.speaker_norm else np.asarray(h, np.float32))})
    full = task.collate(frames)
    with torch.no_grad():
        a = model(pooled["hidden"], pooled["lengths"])
        b = model(full["hidden"], full["lengths"])
    assert torch.allclose(a, b, atol=1e-3), (a - b).abs().max()


def test_linear_head_and_layer_choice():
    from emotk.models.ser.model import SuperbDims, SuperbDownstream

    dims = SuperbDims(num_layers=4, dim=6, num_outputs=3)
    lin = SuperbDownstream(dims, head="linear", pooling="mean_std", layers=[-1], input_dropout=0.2)
    linears = [m for m in lin.head.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 1 and linears[0].in_features == 12 and linears[0].out_features == 3
    assert lin.layers == [3] and lin.layer_sum.num_layers == 1
    lin.eval()
    x = torch.randn(2, 4, 7, 6)
    lengths = torch.tensor([7, 4])
    y = x.clone()
    y[:, :3] = torch.randn(2, 3, 7, 6)  # layers the head does not use
    y[1, :, 4:] = 99.0  # padding
    assert torch.equal(lin(x, lengths), lin(y, lengths))
    with pytest.raises(ConfigError, match="model.layers: index 4 is out of range"):
        SuperbDownstream(dims, layers=[4])
    mlp = SuperbDownstream(dims, head="mlp", head_hidden=5, pooling="mean_std")
    assert [m.out_features for m in mlp.head.modules() if isinstance(m, torch.nn.Linear)] == [5, 3]
    cat = SuperbDownstream(dims, head="linear", pooling="mean", layers=[0, 2], layer_combine="concat").eval()
    (linear,) = [m for m in cat.head.modules() if isinstance(m, torch.nn.Linear)]
    assert linear.in_features == 2 * 6  # layers 0 and 2, each pooled on its own, side by side
    with torch.no_grad():  # = a linear layer on [mean of layer 0 ; mean of layer 2] over the valid frames
        want = linear(torch.cat([x[:, 0, :4].mean(1), x[:, 2, :4].mean(1)], dim=-1))[1]
    assert torch.allclose(cat(x, lengths)[1], want, atol=1e-5)
    with pytest.raises(ConfigError, match="layer_combine"):
        SuperbDownstream(dims, pooling="attentive_stats", layer_combine="concat")


def test_strong_model_survives_export(tmp_path):
    from emotk.core.config import resolve
    from emotk.models.ser.config import SerConfig
    from emotk.models.ser.export import load_export, write_export
    from emotk.models.ser.model import SuperbDims, SuperbDownstream

    cfg = resolve(SerConfig, "ser.superb", None, ["model.pooling=mean_std", "model.head=linear",
                                                  "model.layers=[1,2]", "model.feature_norm=true"]).config
    model = SuperbDownstream.from_config(SuperbDims(3, 5, 4), cfg.model).eval()
    model.set_feature_stats(torch.randn(3, 5), torch.rand(3, 5) + 0.5)
    write_export(tmp_path / "export", model, cfg, ["a", "b", "c", "d"], None)
    again, meta, _ = load_export(tmp_path / "export")
    x, lengths = torch.randn(2, 3, 9, 5), torch.tensor([9, 3])
    assert meta["model"]["head"] == "linear" and again.layers == [1, 2]
    assert torch.allclose(model(x, lengths), again(x, lengths), atol=1e-6)


def test_search_space_parsing_and_errors():
    from emotk.core.config import resolve
    from emotk.models.ser.config import SerConfig
    from emotk.models.ser.search import choose, grid, parse_search, with_search

    assert parse_search("model.layers=[all, [-1], [2,3]]") == ("model.layers", ["all", [-1], [2, 3]])
    with pytest.raises(ConfigError, match="a list of candidate values"):
        parse_search("train.optim.lr=1e-3")
    resolved = resolve(SerConfig, "ser.superb", None, [])
    out = with_search(resolved, ["train.optim.lr=[1e-3,1e-4]", "model.dropout=[0.1,0.3,0.5]"])
    assert out.config.search == {"train.optim.lr": [1e-3, 1e-4], "model.dropout": [0.1, 0.3, 0.5]}
    assert out.hash != resolved.hash and "--search model.dropout=[0.1,0.3,0.5]" in out.sources
    combos = grid(out.config.search)
    assert len(combos) == 6 and combos[0] == {"train.optim.lr": 1e-3, "model.dropout": 0.1}
    assert combos[-1] == {"train.optim.lr": 1e-4, "model.dropout": 0.5}
    for bad, msg in [("upstream.layers=[all,[1]]", "cannot be searched"), ("data.classes=[[a,b]]", "cannot be"),
                     ("train.seed=[0,1]", "cannot be searched"), ("model.dropuot=[0.1]", "unknown config key"),
                     ("model.dropout=[0.1,1.5]", "dropout"), ("model.head=[mlp,quadratic]", "model.head")]:
        with pytest.raises(ConfigError, match=msg) as e:
            with_search(resolved, [bad])
        assert "\n" not in str(e.value)
    assert with_search(resolved, ["data.speaker_norm=[none,per-speaker]"]).config.search
    # choose reads validation metrics only; ties go to the earlier trial; min mode
    trials = [{"valid": {"uar": 0.5}, "test": {"uar": 0.9}}, {"valid": {"uar": 0.7}, "test": {"uar": 0.1}},
              {"valid": {"uar": 0.7}, "test": {"uar": 0.2}}]
    assert choose(trials, "uar") == 1 and choose(trials, "uar", "min") == 0
    with pytest.raises(ConfigError, match="validation split"):
        choose([{"valid": None}], "uar")


# ---- through ser train ---------------------------------------------------------------------------------------------
def _tones(root: Path, flip_valid: bool) -> Path:
    """24 tone utterances of 6 speakers; the label sets the pitch (low / high). ``flip_valid``: the validation
    speaker's labels are swapped, so a model that learns the task scores badly on validation and well on test."""
    root.mkdir(parents=True, exist_ok=True)
    splits = {"s0": "train", "s1": "train", "s2": "train", "s3": "train", "s4": "valid", "s5": "test"}
    lines = []
    for s, (spk, split) in enumerate(splits.items()):
        for k in range(4):
            high = bool(k % 2)
            wav = root / f"{spk}-{k}.wav"
            if not wav.exists():
                write_wav(wav, seconds=0.6 + 0.05 * k, freq=(110 + 7 * s) * (4.0 if high else 1.0))
            label = "high" if high != (flip_valid and split == "valid") else "low"
            lines.append(json.dumps({"id": f"{spk}-{k}", "path": str(wav), "speaker": spk, "emotion": label,
                                     "split": split, "dataset": "tones"}) + "\n")
    path = root / "m.jsonl"
    path.write_text("".join(lines))
    return path


def test_search_chooses_on_validation_even_when_test_disagrees(tmp_path, monkeypatch):
    """Two cached layers both carry the label on train; layer 0 keeps the rule on test but is flipped on the
    validation speaker, layer 1 keeps it on validation but is flipped on test. Searching model.layers=[[0],[1]]:
    validation prefers layer 1, test prefers layer 0 -- the search must pick layer 1 and never score a trial on
    test."""
    import emotk.models.ser.features as ser_features
    from emotk.features.cache import FeatureCache

    manifest = _tones(tmp_path / "data", flip_valid=False)
    records = [json.loads(x) for x in manifest.read_text().splitlines()]

    made: dict[str, FeatureCache] = {}

    def fake_features(man, cfg, cache_root, device="cpu", skip_bad=False, **_):
        if "cache" in made:
            return made["cache"], {"skipped": []}
        rng = np.random.default_rng(0)
        ids = [r["id"] for r in records]
        cache = FeatureCache.create(Path(cache_root) / "designed", "ser-input", {"designed": 1}, ids, shard_size=8)
        for j, block in enumerate(cache.blocks()):
            arrays = {}
            for r in records:
                if r["id"] not in block:
                    continue
                sign = 1.0 if r["emotion"] == "high" else -1.0
                h = 0.1 * rng.standard_normal((2, 12, 4))
                h[0, :, 0] += sign * (-1.0 if r["split"] == "valid" else 1.0)
                h[1, :, 0] += sign * (-1.0 if r["split"] == "test" else 1.0)
                arrays[r["id"]] = {"hidden": h.astype(np.float32)}
            cache.write_shard(j, arrays)
        made["cache"] = FeatureCache(cache.path)
        return made["cache"], {"skipped": []}

    monkeypatch.setattr(ser_features, "ensure_features", fake_features)
    base = ["ser", "train", "-c", "ser/tiny", "--data", manifest, "--set", "upstream.name=lld", "--set",
            "model.pooling=mean_std", "--set", "model.head=linear", "--set", "train.epochs=10", "--set",
            "train.optim.lr=5.0e-2", "--set", "train.select_metric=balanced_accuracy",
            "--set", f"upstream.cache_dir={tmp_path / 'cache'}"]
    out = tmp_path / "run"
    code, stdout, stderr = run_cli("--json", *base, "--search", "model.layers=[[0], [1]]", "-o", out)
    assert code == 0, stderr
    summary = json_out(stdout)
    record = json.loads((out / "search.json").read_text())
    trials = record["folds"]["split"]["trials"]
    assert [t["values"] for t in trials] == [{"model.layers": [0]}, {"model.layers": [1]}]
    assert trials[1]["valid"]["balanced_accuracy"] > trials[0]["valid"]["balanced_accuracy"]
    for t in trials:  # trials are never scored on test
        assert not (out / "search" / "split" / t["trial"] / "eval" / "test").exists()
        assert json.loads((out / "search" / "split" / t["trial"] / "result.json").read_text())["test"] is None
    assert record["folds"]["split"]["chosen"] == {"model.layers": [1]}
    assert summary["search"]["folds"]["split"]["chosen"] == {"model.layers": [1]}
    assert "validation balanced_accuracy" in summary["search"]["selected_on"]
    assert json.loads((out / "run.json").read_text())["search"]["chosen"] == {"split": {"model.layers": [1]}}
    final = json.loads((out / "runs" / "split-seed0" / "run.json").read_text())
    assert final["config"]["model"]["layers"] == [1] and final["config"]["search"] == {}
    # layer 0 really is the test-best: a run on it beats the chosen one on test
    code, stdout, stderr = run_cli("--json", *base, "--set", "model.layers=[0]", "-o", tmp_path / "layer0")
    assert code == 0, stderr
    assert json_out(stdout)["test"]["balanced_accuracy"]["mean"] > summary["test"]["balanced_accuracy"]["mean"]
    # resume skips the finished trials and runs and chooses the same
    code, _, stderr = run_cli(*base, "--search", "model.layers=[[0], [1]]", "-o", out, "--resume")
    assert code == 0, stderr
    assert json.loads((out / "search.json").read_text()) == record


def test_late_best_epoch_warns_and_folds_get_a_sample_std(tmp_path):
    from emotk.core.config import resolve
    from emotk.models.ser.config import SerConfig
    from emotk.models.ser.task import summarise

    manifest = _tones(tmp_path / "data", flip_valid=False)
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(
        "--json", "ser", "train", "-c", "ser/tiny", "--data", manifest, "--set", "upstream.name=lld",
        "--set", "model.feature_norm=true", "--set", "train.epochs=3", "--set", "train.optim.lr=1.0e-5",
        "--set", "train.select_metric=loss", "--set", "train.select_mode=min",
        "--set", f"upstream.cache_dir={tmp_path / 'cache'}", "-o", out)
    assert code == 0, stderr
    summary = json_out(stdout)
    # a tiny lr lowers the validation loss every epoch: the best epoch is the last one
    assert summary["late_best_runs"] == ["split-seed0"] and "last 10% of training" in stderr
    assert "under-train" in stderr
    # sample std over fold means (two folds, two seeds each)
    cfg = resolve(SerConfig, "ser.superb", None, []).config

    class Prepared:
        classes, target_names = ["a", "b"], None

        def inputs(self):
            return {}

    runs = [{"run": f"f{f}-seed{s}", "fold": f"f{f}", "seed": s, "test": {"uar": v}, "valid": {"weighted_f1": v}}
            for (f, s), v in {(0, 0): 0.5, (0, 1): 0.7, (1, 0): 0.8, (1, 1): 0.8}.items()]
    s = summarise(cfg, Prepared(), runs, "h")
    assert s["test"]["uar"]["std"] == pytest.approx(np.std([0.5, 0.7, 0.8, 0.8]))
    assert s["test_over_folds"]["uar"]["values"] == pytest.approx([0.6, 0.8])
    assert s["test_over_folds"]["uar"]["std"] == pytest.approx(np.std([0.6, 0.8], ddof=1))
    assert "sample std" in s["std_kind"]["test_over_folds"] and s["split_reported"] == "test"
