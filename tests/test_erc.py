"""``emotk erc``: HCAM stages trained on frozen MiniLM sentence vectors of small text-only conversations.

A synthetic corpus whose labels follow the words (so a tiny model can learn it), with train / valid / test
dialogues in the records' own ``split``. Checked: training through the CLI (loss falls, reports, summary,
export), predict == the evaluation's predictions, online predict == batch predict of a causal model, resume after
an interruption == uninterrupted, and bad input -> one-line errors.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from conftest import json_out, run_cli

from emotk.errors import ConfigError

PHRASES = {
    "happy": ["I am so happy today", "this is wonderful news", "what a lovely surprise, thank you", "great, I love it"],
    "angry": ["I hate this so much", "stop lying to me", "this is outrageous and unfair", "get out of my office"],
    "sad": ["I miss her terribly", "nothing matters any more", "I feel so lonely and lost", "he passed away"],
    "neutral": ["the meeting is at noon", "please sign the form", "the train leaves at five", "my name is Sam"],
}


def _corpus(path: Path, dialogues: int = 18, turns: int = 6, drop: dict | None = None) -> Path:
    """Text-only dialogues of 2 speakers; dialogue k of each 6 goes to valid (k == 4) or test (k == 5)."""
    classes = list(PHRASES)
    lines = []
    for d in range(dialogues):
        split = "valid" if d % 6 == 4 else ("test" if d % 6 == 5 else "train")
        for t in range(turns - d % 3):
            label = classes[(d + t) % 4]
            rec = {"id": f"d{d:02d}-{t}", "dataset": "toy", "dialogue": f"d{d:02d}", "turn": t,
                   "speaker": "A" if t % 2 == 0 else "B", "text": PHRASES[label][(d * 7 + t) % 4],
                   "emotion": label, "split": split}
            for key, value in (drop or {}).get(rec["id"], {}).items():
                if value is None:
                    rec.pop(key, None)
                else:
                    rec[key] = value
            lines.append(json.dumps(rec) + "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))
    return path


def _args(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["erc", "train", "-c", "erc/tiny", "--data", str(data), "--set", f"embed.cache_dir={cache}",
            "--set", "train.epochs=12", "-o", str(out), *extra]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("erc")
    return {"root": root, "data": _corpus(root / "toy.jsonl"), "cache": root / "features"}


@pytest.fixture(scope="module")
def stage2(toy):
    out = toy["root"] / "stage2"
    code, stdout, stderr = run_cli("--json", *_args(toy["data"], out, toy["cache"]))
    assert code == 0, stderr
    return {"out": out, "summary": json_out(stdout)}


def _losses(run: Path) -> list[float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r.get("split") == "train" and "loss" in r]


def test_stage2_trains_reports_and_exports(stage2):
    out, summary = stage2["out"], stage2["summary"]
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["stage"] == 2 and summary["modalities"] == ["text"] and summary["classes"] == sorted(PHRASES)
    losses = _losses(out / "runs" / "seed0")
    assert len(losses) >= 3 and losses[-1] < 0.8 * losses[0], losses
    assert summary["test"]["weighted_f1"]["mean"] > 0.5  # words decide the label: far above chance (0.25)
    report = json.loads((out / "runs" / "seed0" / "eval" / "test" / "report.json").read_text())
    assert report["num_turns"] == sum(1 for x in (out / "runs/seed0/eval/test/predictions.jsonl").open())
    assert (out / "runs" / "seed0" / "eval" / "test" / "confusion_matrix.png").stat().st_size > 0
    assert (out / "export" / "model.safetensors").is_file() and summary["export"]["from"] == "seed0"
    assert json.loads((out / "run.json").read_text())["data"]["train"]["dialogues"] == 12


def test_evaluate_rescores_the_training_report(stage2, toy, tmp_path):
    out = stage2["out"]
    code, stdout, stderr = run_cli("--json", "evaluate", "erc", str(out))  # thesis Table 4.1 row names
    assert code == 0, stderr
    assert json_out(stdout)["rows"][0]["label"] == "text II"
    code, stdout, stderr = run_cli("--json", "erc", "evaluate", str(out))
    assert code == 0, stderr
    again = json_out(stdout)
    want = json.loads((out / "runs" / "seed0" / "eval" / "test" / "report.json").read_text())["metrics"]
    for k, v in want.items():
        assert again["aggregate"][k]["mean"] == pytest.approx(v, abs=1e-5), k
    code, _, stderr = run_cli("erc", "evaluate", str(out))
    assert code == 1 and "--overwrite" in stderr  # the same evaluation again
    code, _, stderr = run_cli("erc", "evaluate", str(out), "--overwrite")
    assert code == 0, stderr
    other = tmp_path / "other.jsonl"  # another corpus: its own split field; here every dialogue is "test"
    other.write_text("".join(json.dumps({**json.loads(x), "split": "test"}) + "\n"
                             for x in toy["data"].read_text().splitlines()))
    code, stdout, stderr = run_cli("--json", "erc", "evaluate", str(out), "--data", str(other))
    assert code == 0, stderr
    result = json_out(stdout)
    assert result["name"] == "other-test" and (out / "runs" / "seed0" / "eval" / "other-test" / "report.json").is_file()
    assert json.loads((out / "runs/seed0/eval/other-test/report.json").read_text())["num_turns"] == sum(
        1 for _ in toy["data"].open())
    (out / "runs/seed0/eval/other-test/report.json").write_text("{broken")  # unreadable: kept unless told
    code, _, stderr = run_cli("erc", "evaluate", str(out), "--data", str(other))
    assert code == 1 and "--overwrite" in stderr


def test_predict_equals_the_evaluation(stage2, toy, tmp_path):
    test_only = tmp_path / "test.jsonl"
    test_only.write_text("".join(x + "\n" for x in toy["data"].read_text().splitlines()
                                 if json.loads(x)["split"] == "test"))
    code, stdout, stderr = run_cli("erc", "predict", str(test_only), "-m", str(stage2["out"]))
    assert code == 0, stderr
    got = {r["id"]: r for r in map(json.loads, stdout.splitlines())}
    want = [json.loads(x) for x in (stage2["out"] / "runs/seed0/eval/test/predictions.jsonl").read_text().splitlines()]
    assert set(got) == {w["id"] for w in want}
    for w in want:
        g = got[w["id"]]
        assert g["prediction"] == w["prediction"] and g["label"] == w["label"] and g["dialogue"] == w["dialogue"]
        for c, p in w["probabilities"].items():
            assert g["probabilities"][c] == pytest.approx(p, abs=1e-4)
    assert all(r["model"] == json.loads((stage2["out"] / "export/config.json").read_text())["config_hash"]
               for r in got.values())
    # the same dialogues on stdin; a bad line is named as stdin:LINE
    code, stdout, stderr = run_cli("erc", "predict", "-m", str(stage2["out"]), stdin=test_only.read_text())
    assert code == 0, stderr
    assert {r["id"]: r["prediction"] for r in map(json.loads, stdout.splitlines())} == {
        k: v["prediction"] for k, v in got.items()}
    code, _, stderr = run_cli("erc", "predict", "-m", str(stage2["out"]), stdin='{"id": "x"}\n{oops\n')
    assert code == 1 and "stdin:" in stderr and len(stderr.strip().splitlines()) == 1
    # --online needs a causal model
    code, _, stderr = run_cli("erc", "predict", "-m", str(stage2["out"]), "--online", stdin="")
    assert code == 2 and "model.context=causal" in stderr and len(stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def causal(toy):
    """Causal stage II runs (thesis and reference) on the toy corpus."""
    runs = {}
    for compat in ("thesis", "reference"):
        out = toy["root"] / f"causal-{compat}"
        code, _, stderr = run_cli(*_args(toy["data"], out, toy["cache"], "--set", "model.context=causal",
                                         "--set", f"model.compat={compat}", "--set", "train.epochs=3"))
        assert code == 0, stderr
        runs[compat] = out
    return runs


def _online_equals_batch(model: Path, data: Path) -> None:
    records = [json.loads(x) for x in data.read_text().splitlines() if json.loads(x)["split"] != "train"]
    code, stdout, stderr = run_cli("erc", "predict", str(data), "-m", str(model))
    assert code == 0, stderr
    batch = {r["id"]: r for r in map(json.loads, stdout.splitlines())}
    # interleave the dialogues: turn 0 of every dialogue, then turn 1, ...
    stream = sorted(records, key=lambda r: (r["turn"], r["dialogue"]))
    code, stdout, stderr = run_cli("erc", "predict", "-m", str(model), "--online",
                                   stdin="".join(json.dumps(r) + "\n" for r in stream))
    assert code == 0, stderr
    online = [json.loads(x) for x in stdout.splitlines()]
    assert [r["id"] for r in online] == [r["id"] for r in stream]  # one answer per turn, in arrival order
    for r in online:
        for c, p in r["probabilities"].items():
            assert p == pytest.approx(batch[r["id"]]["probabilities"][c], abs=1e-5)


@pytest.mark.parametrize("compat", ["thesis", "reference"])
def test_online_equals_batch_causal(toy, causal, compat):
    _online_equals_batch(causal[compat], toy["data"])
    first = json.loads(toy["data"].read_text().splitlines()[0])  # a turn arriving out of order is refused
    bad = [first, {**first, "id": "again", "turn": 0}]
    code, _, stderr = run_cli("erc", "predict", "-m", str(causal[compat]), "--online",
                              stdin="".join(json.dumps(r) + "\n" for r in bad))
    assert code == 1 and "stdin:2" in stderr and "in order" in stderr


def test_stage3_fuses_the_frozen_stage2_runs(toy, causal, tmp_path):
    """Hierarchical HCAM: stage III reads the turn embeddings of two frozen stage II runs (embed.from_run; here
    both text-based, the toy corpus has no audio); predictions and online prediction go through all stages."""
    out = tmp_path / "stage3"
    code, stdout, stderr = run_cli("--json", *_args(
        toy["data"], out, toy["cache"], "--stage", "3", "--set", "model.modalities=[text,speech]",
        "--set", f"embed.text.from_run={causal['thesis']}", "--set", f"embed.speech.from_run={causal['reference']}",
        "--set", "model.context=causal", "--set", "train.epochs=3"))
    assert code == 0, stderr
    summary = json_out(stdout)
    assert summary["stage"] == 3 and summary["embed"]["speech"]["from_run"] == str(causal["reference"])
    meta = json.loads((out / "export" / "config.json").read_text())
    assert meta["dims"]["inputs"] == {"text": 24, "speech": 4 * 24 + 360}  # the stage II embedding widths (skip 360)
    _online_equals_batch(out, toy["data"])


def test_joint_stage2_and_3_ablation(toy, tmp_path):
    """model.joint: both stage II networks trained with the fusion from stage-I vectors (Table 4.2's ablation)."""
    out = tmp_path / "joint"
    code, stdout, stderr = run_cli("--json", *_args(
        toy["data"], out, toy["cache"], "--stage", "3", "--set", "model.joint=true", "--set",
        "model.modalities=[text,speech]", "--set", "embed.speech={kind: text, config: {model: minilm}}",
        "--set", "model.context=causal", "--set", "train.epochs=3"))
    assert code == 0, stderr
    assert json_out(stdout)["stage"] == 3
    from safetensors.torch import load_file

    keys = load_file(str(out / "export" / "model.safetensors"))
    assert any(k.startswith("context.text.") for k in keys) and any(k.startswith("context.speech.") for k in keys)
    _online_equals_batch(out, toy["data"])


def test_stage1_has_no_context(toy, tmp_path):
    from emotk.models.erc.infer import ErcPredictor

    out = tmp_path / "stage1"
    code, stdout, stderr = run_cli("--json", *_args(toy["data"], out, toy["cache"], "--stage", "1"))
    assert code == 0, stderr
    assert json_out(stdout)["stage"] == 1
    p = ErcPredictor(out)
    vecs = p.embed_turns([{"id": "x", "text": "I am so happy today"}, {"id": "y", "text": "he passed away"}])
    alone = p.logits({"text": vecs["text"][:1]}, [0])
    both = p.logits(vecs, [0, 1])
    assert alone[0].tolist() == pytest.approx(both[0].tolist(), abs=1e-6)  # the other turn changes nothing


def test_resume_after_interruption_gives_the_same_result(stage2, toy, monkeypatch):
    from emotk.models.erc.task import ErcTask

    original = ErcTask.training_step

    def interrupted(self, model, batch, state):
        if state.step == 5 and state.micro == 0:
            os.kill(os.getpid(), signal.SIGUSR1)
        return original(self, model, batch, state)

    out = toy["root"] / "resumed"
    monkeypatch.setattr(ErcTask, "training_step", interrupted)
    code, _, stderr = run_cli(*_args(toy["data"], out, toy["cache"]))
    assert code == 3 and "--resume" in stderr and not (out / "summary.json").exists()
    monkeypatch.setattr(ErcTask, "training_step", original)
    code, stdout, stderr = run_cli("--json", *_args(toy["data"], out, toy["cache"], "--resume"))
    assert code == 0, stderr
    resumed = json_out(stdout)
    for split in ("test", "valid"):
        for metric, agg in stage2["summary"][split].items():
            assert resumed[split][metric]["values"] == pytest.approx(agg["values"], abs=1e-6), metric


@pytest.mark.parametrize("drop, message", [
    ({"d03-2": {"dialogue": None}}, "has no 'dialogue'"),
    ({"d03-2": {"turn": 1}}, "duplicate"),
    ({"d04-2": {"emotion": "bored"}}, "bored"),  # a validation label the training split does not have
    ({"d03-2": {"text": None}}, "text"),
])
def test_bad_input_is_one_line(toy, tmp_path, drop, message):
    data = _corpus(tmp_path / "bad.jsonl", drop=drop)
    code, _, stderr = run_cli(*_args(data, tmp_path / "out", toy["cache"]))
    assert code == 1, stderr
    assert len(stderr.strip().splitlines()) == 1 and message in stderr and "bad.jsonl" in stderr, stderr
    assert not (tmp_path / "out").exists()  # checked before the output folder is made


def test_config_errors_name_the_key():
    from emotk.core.config import resolve
    from emotk.models.erc.config import ErcConfig

    for sets, msg in [(["model.stage=3"], "model.stage 3 fuses both"), (["model.stage=4"], "model.stage"),
                      (["model.modalities=[speech]"], "embed.speech"), (["loss.beta=1.5"], "loss.beta"),
                      (["model.attention_dim=100", "model.heads=3"], "multiple of model.heads")]:
        with pytest.raises(ConfigError, match=msg):
            resolve(ErcConfig, "erc.hcam", None, sets)
    cfg = resolve(ErcConfig, "erc.hcam", None, ["model.stage=3", "model.modalities=[text,speech]",
                                                "embed.speech.kind=acoustic"]).config
    assert cfg.embed.speech.kind == "acoustic" and cfg.train.optim.lr == pytest.approx(1e-5)


def test_two_process_ddp_gives_the_one_process_metrics(toy, tmp_path):
    """`erc train` under two gloo processes (torchrun's environment variables) reports the metrics of one process:
    a step's conversations are split over the processes and each weighs its labelled turns, so the CE gradient is
    the one-process gradient. (SupCon takes its positives within each process's conversations, so with beta < 1
    two processes differ slightly from one: the comparison uses beta = 1.)"""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    one = tmp_path / "one"
    code, stdout, stderr = run_cli("--json", *_args(toy["data"], one, toy["cache"], "--set", "loss.beta=1.0"))
    assert code == 0, stderr
    reference = json_out(stdout)
    out = tmp_path / "ddp"
    repo = Path(__file__).resolve().parents[1]
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
               "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
        procs.append(subprocess.Popen([sys.executable, "-m", "emotk", "--json", *_args(toy["data"], out, toy["cache"],
                                                                             "--set", "loss.beta=1.0")],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n---\n".join(e[-3000:] for _, e in outs)
    assert outs[1][0].strip() == ""  # only rank 0 prints the result
    ddp = json.loads((out / "summary.json").read_text())
    for split in ("test", "valid"):
        for metric, agg in reference[split].items():
            assert ddp[split][metric]["values"] == pytest.approx(agg["values"], abs=1e-4), (split, metric)
