"""``emotk evaluate ser|erc`` aggregation: run folders written with the SER pipeline's own layout and keys
(run.json through emotk.core.runs.provenance, summary.json through pipeline.summarise) -> mean ± std tables."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from emotk.errors import DataError, UsageError
from emotk.eval.aggregate import aggregate_runs, render_aggregate_markdown, write_aggregate_report

REPO = Path(__file__).resolve().parents[1]
CLASS_METRICS = ("weighted_f1", "balanced_accuracy", "macro_f1", "accuracy", "loss")
INPUTS = {"manifest_sha256": "1" * 64, "protocol": "demo-ser-test", "protocol_sha256": "2" * 64}


def _metrics(rng: np.random.Generator, names=CLASS_METRICS) -> dict[str, float]:
    return {n: float(rng.uniform(0.2, 0.9)) for n in names}


def _write(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def make_experiment(out: Path, folds=("f0", "f1"), seeds=(0, 1, 2), task_type="classification",
                    names=CLASS_METRICS, seed=0, with_reports=True) -> list[dict]:
    """An ``emotk ser train -o OUT`` folder (no weights): run.json / summary.json / runs/*/{run.json, result.json,
    eval/<split>/report.json} with the keys the pipeline writes. Returns the per-run results."""
    from emotk.core.config import resolve
    from emotk.core.runs import provenance
    from emotk.models.ser.config import SerConfig
    from emotk.models.ser.task import run_name, summarise

    overrides = [f"task_type={task_type}"]
    if task_type == "regression":
        overrides += ["loss.name=ccc", "train.select_metric=ccc"]
    resolved = resolve(SerConfig, "ser.superb", REPO / "configs" / "ser" / "tiny.yaml", overrides)
    rng = np.random.default_rng(seed)
    classes = ["angry", "happy", "neutral", "sad"] if task_type == "classification" else None
    prepared = SimpleNamespace(inputs=lambda: dict(INPUTS), classes=classes,
                               target_names=None if classes else ["valence", "arousal", "dominance"])
    _write(out / "run.json", {"argv": ["emotk", "ser", "train"], "config": resolved.as_dict(),
                              "config_sources": resolved.sources, **provenance(resolved, inputs=INPUTS)})
    results = []
    for fold in folds:
        for s in seeds:
            name = run_name(fold, s)
            sub = out / "runs" / name
            valid, test = _metrics(rng, names), _metrics(rng, names)
            _write(sub / "run.json", {"argv": [], "config": resolved.as_dict(), "config_sources": resolved.sources,
                                      **provenance(resolved, inputs=INPUTS, seed=s)})
            result = {"run": name, "fold": fold, "seed": s, "stopped": "completed", "steps": 10,
                      "best": {**valid, "epoch": 1, "step": 10}, "checkpoint": "ckpt/best",
                      "valid": valid, "test": test}
            _write(sub / "result.json", result)
            if with_reports:
                for split, m in (("valid", valid), ("test", test)):
                    _write(sub / "eval" / split / "report.json",
                           {"run": name, "fold": fold, "seed": s, "checkpoint": "ckpt/best", **INPUTS,
                            "config_hash": resolved.hash, "split": split, "num_samples": 16, "metrics": m,
                            "report": {}})
            results.append(result)
    cfg = resolved.config
    _write(out / "summary.json", summarise(cfg, prepared, results, resolved.hash))
    return results


def test_mean_std_over_fold_seed_runs_matches_numpy(tmp_path):
    results = make_experiment(tmp_path / "wavlm")
    table = aggregate_runs([tmp_path / "wavlm"], "ser")
    assert table["task"] == "ser" and table["split"] == "test"
    assert table["metrics"] == list(CLASS_METRICS)  # the report's names and order
    (row,) = table["rows"]
    assert row["label"] == "wavlm" and row["n"] == 6 and row["incomplete"] == []
    assert [(r["fold"], r["seed"]) for r in row["runs"]] == [(f, s) for f in ("f0", "f1") for s in (0, 1, 2)]
    for metric in CLASS_METRICS:
        values = np.array([r["test"][metric] for r in results])
        stat = row["metrics"][metric]
        assert stat["n"] == 6
        assert stat["mean"] == pytest.approx(values.mean(), abs=1e-12)
        assert stat["std"] == pytest.approx(values.std(), abs=1e-12)  # population std, like summary.json
    # the same numbers as the pipeline's own summary.json
    summary = json.loads((tmp_path / "wavlm" / "summary.json").read_text())
    assert row["metrics"]["weighted_f1"]["mean"] == pytest.approx(summary["test"]["weighted_f1"]["mean"])
    prov = row["provenance"]
    assert prov["task"] == "ser.superb" and prov["config"] == "tiny" and prov["protocol_sha256"] == "2" * 64
    assert len(prov["config_hash"]) == 64 and prov["emotk_version"]

    valid = aggregate_runs([tmp_path / "wavlm"], "ser", split="valid")["rows"][0]
    assert valid["metrics"]["accuracy"]["mean"] == pytest.approx(np.mean([r["valid"]["accuracy"] for r in results]))


def test_rows_per_folder_single_runs_and_regression_names(tmp_path):
    make_experiment(tmp_path / "a" / "exp", seed=1)
    reg = make_experiment(tmp_path / "b" / "exp", folds=("f0",), seeds=(0, 1), task_type="regression",
                          names=("ccc", "pearson", "loss", "ccc_valence"), seed=2)
    single = tmp_path / "a" / "exp" / "runs" / "f1-seed2"
    table = aggregate_runs([tmp_path / "a" / "exp", tmp_path / "b" / "exp", single], "ser")
    # equal folder names are widened with their parents; metric columns are the union, first-seen order
    assert [r["label"] for r in table["rows"]] == ["a/exp", "b/exp", "f1-seed2"]
    assert table["metrics"] == [*CLASS_METRICS, "ccc", "pearson", "ccc_valence"]
    reg_row, single_row = table["rows"][1], table["rows"][2]
    assert reg_row["n"] == 2 and "accuracy" not in reg_row["metrics"]
    assert reg_row["metrics"]["ccc"]["mean"] == pytest.approx(np.mean([r["test"]["ccc"] for r in reg]))
    assert single_row["n"] == 1 and single_row["metrics"]["accuracy"]["std"] == 0.0
    assert single_row["runs"][0]["run"] == "f1-seed2"

    md = render_aggregate_markdown(table)
    lines = [x for x in md.splitlines() if x.startswith("|")]
    assert lines[0] == "| Run | n | " + " | ".join(table["metrics"]) + " |"
    reg_cells = lines[3].strip("|").split(" | ")
    assert reg_cells[0].strip() == "b/exp" and reg_cells[2] == "–"  # no accuracy for a regression run
    stat = reg_row["metrics"]["ccc"]
    assert f"{stat['mean']:.4f} ± {stat['std']:.4f}" in md

    twice = aggregate_runs([single, single], "ser")
    assert [r["label"] for r in twice["rows"]] == ["f1-seed2#1", "f1-seed2#2"]
    labelled = aggregate_runs([tmp_path / "b" / "exp"], "ser", labels=["wavlm-vad"])
    assert labelled["rows"][0]["label"] == "wavlm-vad"


def test_reports_are_written_deterministically(tmp_path):
    make_experiment(tmp_path / "exp")
    table = aggregate_runs([tmp_path / "exp"], "ser")
    a = write_aggregate_report(table, tmp_path / "out-a")
    b = write_aggregate_report(aggregate_runs([tmp_path / "exp"], "ser"), tmp_path / "out-b")
    for key in ("json", "csv", "markdown"):
        assert a[key].read_bytes() == b[key].read_bytes(), key
    assert json.loads(a["json"].read_text()) == json.loads(json.dumps(table))
    rows = list(csv.reader(io.StringIO(a["csv"].read_text())))
    assert rows[0] == ["run", "metric", "mean", "std", "n", "path"]
    assert len(rows) == 1 + len(CLASS_METRICS)
    acc = next(r for r in rows if r[1] == "accuracy")
    assert float(acc[2]) == table["rows"][0]["metrics"]["accuracy"]["mean"] and acc[4] == "6"


def test_incomplete_runs_and_fallbacks(tmp_path):
    results = make_experiment(tmp_path / "exp", with_reports=False)
    # an interrupted run: run.json but no result.json -> listed, not counted
    (tmp_path / "exp" / "runs" / "f1-seed2" / "result.json").unlink()
    row = aggregate_runs([tmp_path / "exp"], "ser")["rows"][0]
    assert row["n"] == 5 and row["incomplete"] == ["f1-seed2"]
    assert row["metrics"]["macro_f1"]["mean"] == pytest.approx(np.mean([r["test"]["macro_f1"] for r in results[:5]]))
    assert "without metrics: f1-seed2" in render_aggregate_markdown(aggregate_runs([tmp_path / "exp"], "ser"))

    # only summary.json left (runs/ removed): its per-run entries are used
    import shutil

    shutil.rmtree(tmp_path / "exp" / "runs")
    row = aggregate_runs([tmp_path / "exp"], "ser")["rows"][0]
    assert row["n"] == 6
    assert row["metrics"]["loss"]["std"] == pytest.approx(np.std([r["test"]["loss"] for r in results]))


def test_erc_runs_with_the_same_contract(tmp_path):
    run = tmp_path / "hcam"
    _write(run / "run.json", {"task": "erc.hcam", "config_hash": "3" * 64, "inputs": INPUTS})
    values = [0.61, 0.65, 0.58]
    for i, v in enumerate(values):
        _write(run / "runs" / f"split-seed{i}" / "result.json",
               {"run": f"split-seed{i}", "fold": None, "seed": i, "metrics": {"weighted_f1": v}})
    row = aggregate_runs([run], "erc")["rows"][0]
    assert row["metrics"]["weighted_f1"]["mean"] == pytest.approx(np.mean(values))
    assert row["metrics"]["weighted_f1"]["std"] == pytest.approx(np.std(values))
    with pytest.raises(DataError, match=r"hcam: a erc.hcam run, not an SER run \(run.json says task 'erc.hcam'\)"):
        aggregate_runs([run], "ser")


def test_wrong_task_and_non_run_folders_are_one_line_errors(tmp_path):
    make_experiment(tmp_path / "exp")
    with pytest.raises(DataError) as err:
        aggregate_runs([tmp_path / "exp"], "erc")
    assert str(err.value) == (f"{tmp_path / 'exp'}: a ser.superb run, not an ERC run "
                              f"(run.json says task 'ser.superb')")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: not a SER run folder \(no run.json or summary.json naming its task"):
        aggregate_runs([tmp_path / "empty"], "ser")
    with pytest.raises(DataError, match="missing: no such run folder"):
        aggregate_runs([tmp_path / "missing"], "ser")
    with pytest.raises(DataError, match=r"no 'train' metrics"):
        aggregate_runs([tmp_path / "exp"], "ser", split="train")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text('{"task": "ser.superb",\n oops')
    with pytest.raises(DataError, match=r"broken/run.json:2: invalid JSON"):
        aggregate_runs([tmp_path / "broken"], "ser")
    with pytest.raises(UsageError, match="unknown task 'asr'"):
        aggregate_runs([tmp_path / "exp"], "asr")
    with pytest.raises(UsageError, match="no run folders given"):
        aggregate_runs([], "ser")


def test_cli_evaluate_ser_writes_the_table(tmp_path):
    from conftest import json_out, run_cli

    results = make_experiment(tmp_path / "wavlm")
    make_experiment(tmp_path / "lld", seeds=(0,))
    code, stdout, err = run_cli("--json", "evaluate", "ser", tmp_path / "wavlm", tmp_path / "lld", "-o", tmp_path / "t",
                                "--label", "WavLM", "--label", "lld")
    assert code == 0, err
    table = json_out(stdout)
    assert [r["label"] for r in table["rows"]] == ["WavLM", "lld"] and [r["n"] for r in table["rows"]] == [6, 2]
    wf1 = np.array([r["test"]["weighted_f1"] for r in results])
    assert table["rows"][0]["metrics"]["weighted_f1"]["mean"] == pytest.approx(wf1.mean())
    md = (tmp_path / "t" / "table.md").read_text()
    assert "| WavLM | 6 |" in md and (tmp_path / "t" / "results.csv").is_file()
    code, _, err = run_cli("evaluate", "ser", tmp_path / "wavlm", "-o", tmp_path / "t")
    assert code != 0 and "--overwrite" in err and (tmp_path / "t" / "table.md").read_text() == md  # kept
    code, _, err = run_cli("evaluate", "ser", tmp_path / "wavlm", "-o", tmp_path / "t", "--overwrite")
    assert code == 0 and "| WavLM |" not in (tmp_path / "t" / "table.md").read_text()  # replaced
    code, stdout, _ = run_cli("evaluate", "ser", tmp_path / "wavlm")
    assert code == 0 and "| Run | n |" in stdout  # without -o: the Markdown table on stdout only
    code, _, err = run_cli("evaluate", "erc", tmp_path / "wavlm")
    assert code == 1 and "ser" in err and "Traceback" not in err  # a SER folder is not an ERC run
