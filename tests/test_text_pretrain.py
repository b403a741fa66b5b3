"""LLM sentiment labelling (`emotk data label`) and text pre-training (`emotk pretrain text`), METHODS.md §2."""

from __future__ import annotations

import csv
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest

from emotk.data.label import ERROR_FIELD, LABEL_FIELD, RAW_FIELD, THESIS_PROMPT
from emotk.data.label.backends import FatalLabelError, FileLabeller, OpenAICompatibleLabeller, normalize_answer
from emotk.data.label.run import label_manifest, progress_path
from emotk.errors import DataError, EmotkError, OutputExistsError

SHARED = Path(__file__).resolve().parents[2] / "shared"
KEY = "sk-test-123"

# transcript -> how the fake endpoint answers
SCRIPT = {
    "what a happy day": "Positive.",
    "this is a bad day": "The sentiment is negative",
    "the table is brown": "neutral sentiment",
    "i love it": "positive",
    "garbage please": "banana split",
    "flaky one": "Negative",  # first request: 429, then this
    "broken one": None,  # always HTTP 500
}


class FakeEndpoint:
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1 (port 0) answering from SCRIPT."""

    max_requests = 200

    def __init__(self):
        self.requests: list[dict] = []
        self.seen: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                return

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = body["messages"][-1]["content"]
                server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                server.seen[text] = server.seen.get(text, 0) + 1
                if len(server.requests) > server.max_requests:
                    return self._send(503, {"error": "request budget of the fake server exceeded"})
                if self.headers.get("Authorization") != f"Bearer {KEY}":
                    return self._send(401, {"error": "bad key"})
                if text == "flaky one" and server.seen[text] == 1:
                    return self._send(429, {"error": "slow down"}, {"Retry-After": "0"})
                if SCRIPT.get(text, "") is None:
                    return self._send(500, {"error": "boom"})
                answer = SCRIPT.get(text, "neutral")
                return self._send(200, {"choices": [{"message": {"role": "assistant", "content": answer}}]})

            def _send(self, code, obj, headers=None):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def count(self, text: str | None = None) -> int:
        return len(self.requests) if text is None else self.seen.get(text, 0)


@pytest.fixture
def endpoint(monkeypatch):
    monkeypatch.setenv("EMOTK_TEST_LLM_KEY", KEY)
    server = FakeEndpoint()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()
    server.thread.join(timeout=5)


def _manifest(path: Path, texts: list[str], field: str = "asr_text") -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": f"t_{i:03d}", "path": f"a{i}.wav", "dataset": "t", field: t}) + "\n")
    return path


def _labeller(url: str, **kw) -> OpenAICompatibleLabeller:
    opts = dict(api_key_env="EMOTK_TEST_LLM_KEY", max_retries=2, backoff=0.01, max_backoff=0.05, timeout=5)
    opts.update(kw)
    return OpenAICompatibleLabeller(url, "fake-gpt", **opts)


def _read(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


@pytest.mark.parametrize("answer,label", [
    ("Positive.", "positive"), ("The sentiment is negative", "negative"), ("neutral sentiment", "neutral"),
    ("  NEUTRAL\n", "neutral"), ("Sentiment: Negative.", "negative"), ("Negative (not positive)", "negative"),
    ("positive, negative or neutral", None), ("not positive", None), ("It isn't negative", None),
    ("banana", None), ("", None), (None, None), ("positives", None),
])
def test_normalize_answer(answer, label):
    assert normalize_answer(answer) == label


def test_openai_labels_retries_cache_and_bearer(endpoint, tmp_path):
    texts = list(SCRIPT) + [""]  # an empty transcript is never sent
    m = _manifest(tmp_path / "m.jsonl", texts)
    out = tmp_path / "out" / "labelled.jsonl"
    s = label_manifest(m, out, _labeller(endpoint.url), resume=False, batch_size=3)
    recs = _read(out)
    by_text = {r["asr_text"]: r for r in recs.values()}
    assert by_text["what a happy day"][LABEL_FIELD] == "positive"
    assert by_text["this is a bad day"][LABEL_FIELD] == "negative"
    assert by_text["the table is brown"][LABEL_FIELD] == "neutral"
    assert by_text["flaky one"][LABEL_FIELD] == "negative"  # 429 then success
    assert by_text["garbage please"][LABEL_FIELD] is None and by_text["garbage please"][RAW_FIELD] == "banana split"
    assert by_text["broken one"][LABEL_FIELD] is None and "500" in by_text["broken one"][ERROR_FIELD]
    assert by_text[""][LABEL_FIELD] is None
    assert s["labels"] == {"negative": 2, "neutral": 1, "positive": 2}
    assert (s["unparseable"], s["failed"], s["empty_text"], s["records"]) == (1, 1, 1, len(texts))
    assert endpoint.count("flaky one") == 2 and endpoint.count("broken one") == 3  # max_retries=2 -> 3 attempts
    assert endpoint.count("") == 0 and s["retries"] == 3
    assert s["requests"] == endpoint.count() == 10
    assert all(r["auth"] == f"Bearer {KEY}" and r["path"] == "/v1/chat/completions" for r in endpoint.requests)
    body = endpoint.requests[0]["body"]
    assert body["model"] == "fake-gpt" and body["temperature"] == 0.0
    assert body["messages"][0] == {"role": "system", "content": THESIS_PROMPT}
    assert list(recs) == [f"t_{i:03d}" for i in range(len(texts))]  # input order kept
    assert recs["t_000"]["path"] == str((tmp_path / "a0.wav").resolve())  # out lives elsewhere: paths made absolute

    # a second run (another output, same cache): only the item that never got an answer is requested again
    before = endpoint.count()
    s2 = label_manifest(m, tmp_path / "out" / "again.jsonl", _labeller(endpoint.url), resume=False)
    assert endpoint.count() - before == 3 and endpoint.count("broken one") == 6
    assert s2["cache_hits"] == 6 and s2["labels"] == s["labels"]
    with pytest.raises(OutputExistsError):
        label_manifest(m, out, _labeller(endpoint.url), resume=False)


def test_openai_resume_after_interruption(endpoint, tmp_path):
    texts = [f"sentence number {i}" for i in range(7)]
    m = _manifest(tmp_path / "m.jsonl", texts)
    out = tmp_path / "labelled.jsonl"
    calls = []

    def interrupt(n):
        calls.append(n)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        label_manifest(m, out, _labeller(endpoint.url), resume=False, batch_size=2, cache=False, on_progress=interrupt)
    assert not out.exists() and endpoint.count() == 4
    done = progress_path(out).read_text(encoding="utf-8").splitlines()
    assert len(done) == 1 + 4  # header + the two finished batches
    s = label_manifest(m, out, _labeller(endpoint.url), resume=True, batch_size=2, cache=False)
    assert endpoint.count() == 7 and all(v == 1 for v in endpoint.seen.values())  # nothing asked twice
    assert s["resumed"] == 4 and s["requests"] == 3 and s["labels"]["neutral"] == 7
    assert all(r[LABEL_FIELD] == "neutral" for r in _read(out).values())


def test_label_journal_cuts_a_torn_line_checks_identity_and_names_shards(tmp_path):
    m = _manifest(tmp_path / "m.jsonl", ["a", "b", "c", "d"], field="text")
    jl = tmp_path / "labels.jsonl"
    jl.write_text("".join(json.dumps({"id": f"t_00{i}", "label": c}) + "\n"
                          for i, c in enumerate(["neutral", "positive", "negative", "neutral"])), encoding="utf-8")
    out = tmp_path / "l.jsonl"

    def interrupt(n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        label_manifest(m, out, FileLabeller(jl), field="text", resume=False, batch_size=2, on_progress=interrupt)
    prog = progress_path(out)
    assert prog.name == "l.jsonl.progress.jsonl" and len(prog.read_text(encoding="utf-8").splitlines()) == 1 + 2
    with open(prog, "a", encoding="utf-8") as f:
        f.write('{"id": "t_002", "lab')  # the writer died mid-line
    with pytest.raises(OutputExistsError, match="--resume"):  # an unfinished journal is never restarted silently
        label_manifest(m, out, FileLabeller(jl), field="text", resume=False)
    with pytest.raises(DataError, match="field"):  # answers of another setup never mix
        label_manifest(m, out, FileLabeller(jl), field="auto", resume=True)
    s = label_manifest(m, out, FileLabeller(jl), field="text", resume=True, batch_size=2)
    assert s["resumed"] == 2 and s["records"] == 4 and s["labels"] == {"negative": 1, "neutral": 2, "positive": 1}
    lines = [json.loads(x) for x in prog.read_text(encoding="utf-8").splitlines()]  # the torn line was cut
    assert lines[0]["journal"] == "label" and [x["id"] for x in lines[1:]] == ["t_000", "t_001", "t_002", "t_003"]
    s0 = label_manifest(m, tmp_path / "s.jsonl", FileLabeller(jl), field="text", shard=(0, 2), resume=False)
    assert Path(s0["progress"]).name == "s.jsonl.progress.shard-0-of-2.jsonl" and s0["shard"] == "0/2"


def test_openai_bad_key_is_fatal_and_rate_limit(endpoint, tmp_path, monkeypatch):
    m = _manifest(tmp_path / "m.jsonl", ["what a happy day", "i love it"])
    monkeypatch.setenv("EMOTK_TEST_LLM_KEY", "wrong")
    with pytest.raises(FatalLabelError, match="401"):
        label_manifest(m, tmp_path / "x.jsonl", _labeller(endpoint.url), resume=False)
    monkeypatch.setenv("EMOTK_TEST_LLM_KEY", KEY)
    import time

    m3 = _manifest(tmp_path / "m3.jsonl", ["what a happy day", "i love it", "this is a bad day"])
    t0 = time.monotonic()
    s = label_manifest(m3, tmp_path / "y.jsonl", _labeller(endpoint.url + "/v1", rate=10.0, concurrency=3),
                       resume=False, cache=False)
    assert s["labels"] == {"negative": 1, "neutral": 0, "positive": 2}
    assert time.monotonic() - t0 >= 0.19  # 3 concurrent requests, still at most 10/s

    # an endpoint that keeps failing stops the run early; what finished is kept for --resume
    down = _manifest(tmp_path / "down.jsonl", ["i love it"] + ["broken one"] * 4)
    with pytest.raises(EmotkError, match="2 items in a row"):
        label_manifest(down, tmp_path / "d.jsonl", _labeller(endpoint.url, max_retries=0), resume=False,
                       batch_size=1, max_consecutive_failures=2)
    assert endpoint.count("broken one") == 2 and not (tmp_path / "d.jsonl").exists()


def test_file_labeller_csv_jsonl_and_shards(tmp_path):
    m = _manifest(tmp_path / "m.jsonl", ["a", "b", "c", "d"], field="text")
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\nt_000,Positive\nt_001,negative.\nt_002,unsure\n", encoding="utf-8")
    s = label_manifest(m, tmp_path / "l.jsonl", FileLabeller(labels), field="text", resume=False)
    recs = _read(tmp_path / "l.jsonl")
    assert [recs[f"t_00{i}"][LABEL_FIELD] for i in range(4)] == ["positive", "negative", None, None]
    assert recs["t_003"][ERROR_FIELD].startswith("no label for id 't_003'")
    assert (s["unparseable"], s["failed"], s["requests"]) == (1, 1, 0)
    jl = tmp_path / "labels.jsonl"
    jl.write_text("".join(json.dumps({"id": f"t_00{i}", "sentiment": c}) + "\n"
                          for i, c in enumerate(["neutral", "positive", "negative", "neutral"])), encoding="utf-8")
    parts = [label_manifest(m, tmp_path / f"s{i}.jsonl", FileLabeller(jl), field="text", shard=(i, 2), resume=False)
             for i in range(2)]
    assert [p["records"] for p in parts] == [2, 2]
    assert sorted(_read(tmp_path / "s0.jsonl")) == ["t_000", "t_002"]
    with pytest.raises(DataError, match="asr_text"):
        label_manifest(m, tmp_path / "z.jsonl", FileLabeller(jl), field="asr_text", resume=False)
    bad = tmp_path / "bad.csv"
    bad.write_text("uid,label\nx,positive\n", encoding="utf-8")
    with pytest.raises(DataError, match="id"):
        FileLabeller(bad)


def test_hf_labeller_tiny_llama_end_to_end(tmp_path):
    from emotk.data.label.backends import HFCausalLMLabeller

    texts = ["i am so happy today", "this is bad", "ok then", "what a day", "no"]
    m = _manifest(tmp_path / "m.jsonl", texts)
    lab = HFCausalLMLabeller("tiny-llama", batch_size=4, max_new_tokens=4)
    s = label_manifest(m, tmp_path / "o.jsonl", lab, resume=False, batch_size=5, cache=False)
    recs = _read(tmp_path / "o.jsonl")
    assert s["records"] == 5 and s["failed"] == 0 and lab.requests == 2  # 5 items, batches of 4 -> 2 generate calls
    assert s["labelled"] + s["unparseable"] == 5  # random weights: garbage answers are counted, not fatal
    assert all(isinstance(r[RAW_FIELD], str) for r in recs.values())
    assert all(r[LABEL_FIELD] == normalize_answer(r[RAW_FIELD]) for r in recs.values())

    # chat templates: system + user message; a template that refuses the system role gets one user message
    lab.tokenizer.chat_template = ("{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
                                   "{% if add_generation_prompt %}[assistant]{% endif %}")
    text, add_special = lab.render("hello there")
    assert text == f"[system] {THESIS_PROMPT}\n[user] hello there\n[assistant]" and add_special is False
    lab.tokenizer.chat_template = ("{% if messages[0].role == 'system' %}{{ raise_exception('no system') }}{% endif %}"
                                   "{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}")
    assert lab.render("hello there")[0] == f"[user] {THESIS_PROMPT}\n\nhello there"


def _sentences() -> list[tuple[str, str]]:
    """~40 (text, sentiment) pairs: MELD train utterances when the shared data is there, else synthetic ones."""
    meld = SHARED / "data" / "meld" / "train_sent_emo.csv"
    if meld.is_file():
        with open(meld, encoding="utf-8") as f:
            rows = list(csv.DictReader(f))[:40]
        return [(r["Utterance"], r["Sentiment"]) for r in rows]
    words = {"positive": "happy great love nice good", "negative": "bad hate sad angry sorry",
             "neutral": "the table is here today"}
    out = []
    for i in range(42):
        label = ("positive", "negative", "neutral")[i % 3]
        w = words[label].split()
        out.append((f"{w[i % 5]} {w[(i + 2) % 5]} {w[(i + 3) % 5]}", label))
    return out


def test_pretrain_text_cli_end_to_end(tmp_path):
    import typer
    from typer.testing import CliRunner

    from emotk.cli.data import label_command
    from emotk.cli.pretrain import text as pretrain_text_command
    from emotk.features.text import TextEncoder
    from emotk.models.text.export import load_export

    app = typer.Typer()
    app.command("label")(label_command)
    app.command("text")(pretrain_text_command)
    pairs = _sentences()
    m = _manifest(tmp_path / "m.jsonl", [t for t, _ in pairs], field="text")
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"t_{i:03d},{lab}\n" for i, (_, lab) in enumerate(pairs)),
                      encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(app, ["label", str(m), "-o", str(tmp_path / "lab.jsonl"), "--labeller", "file",
                              "--labels", str(labels), "--field", "text"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["text", "--data", str(tmp_path / "lab.jsonl"), "-c", "pretrain/text-tiny",
                              "--set", "train.epochs=2", "-o", str(tmp_path / "run")])
    assert res.exit_code == 0, (res.output, res.exception)
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["data"]["used"] == len(pairs) and summary["data"]["valid"] == math.ceil(0.1 * len(pairs))
    assert set(summary["valid"]) >= {"weighted_f1", "macro_f1", "balanced_accuracy", "accuracy", "loss"}
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    train = [x for x in lines if x["split"] == "train"]
    first = [x["loss"] for x in train if x["epoch"] == 1]
    last = [x["loss"] for x in train if x["epoch"] == 2]
    assert first and last and sum(last) / len(last) < sum(first) / len(first)
    export = run / "export"
    assert (export / "config.json").is_file() and (export / "head.safetensors").is_file()
    enc = TextEncoder(model=str(export))
    emb = enc.encode(["what a happy day", "bad"])
    assert emb.shape == (2, 32) and enc.num_layers == 2
    model, tok, classes = load_export(export)
    assert classes == ["negative", "neutral", "positive"]
    import torch

    batch = tok(["what a happy day", "bad"], padding=True, return_tensors="pt")
    with torch.no_grad():
        pooled = model.embed(batch["input_ids"], batch["attention_mask"]).numpy()
        logits = model(batch["input_ids"], batch["attention_mask"])
    assert logits.shape == (2, 3)
    assert abs(pooled - emb).max() < 1e-5  # the export's encoder is the one TextEncoder embeds with
    # inference over texts (models/text/infer.py): the model's own probabilities, independent of the batch
    from emotk.models.text.infer import TextClassifier

    clf = TextClassifier(export, batch_size=2)
    texts = ["what a happy day", "bad", "a much longer sentence about nothing in particular at all", "ok"]
    preds = clf.predict(texts)
    assert [p["label"] for p in preds[:2]] == [classes[int(i)] for i in logits.argmax(-1)]
    assert np.allclose([list(p["probabilities"].values()) for p in preds[:2]], torch.softmax(logits, -1).numpy(),
                       atol=1e-5)
    one_by_one = np.concatenate([TextClassifier(export, batch_size=1).probabilities([t]) for t in texts])
    assert np.allclose(clf.probabilities(texts), one_by_one, atol=1e-5)
    assert np.allclose(clf.embed(texts[:2]), emb, atol=1e-5) and clf.embed([]).shape == (0, 32)

    again = ["text", "--data", str(tmp_path / "lab.jsonl"), "-c", "pretrain/text-tiny", "--set", "train.epochs=2",
             "-o", str(run)]
    res = runner.invoke(app, again)
    assert isinstance(res.exception, OutputExistsError)  # never overwritten silently
    res = runner.invoke(app, again + ["--resume"])  # a finished run resumes to the same result without training
    assert res.exit_code == 0, (res.output, res.exception)
    resumed = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert resumed["steps"] == summary["steps"] and resumed["valid"] == pytest.approx(summary["valid"])
    after = [json.loads(x) for x in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [x for x in after if x["split"] == "train"] == train  # no training step ran again


def test_shipped_text_configs_resolve():
    from emotk.core.config import resolve
    from emotk.models.text.config import TextPretrainConfig
    from emotk.recipes import find_config, schema_for

    assert schema_for("pretrain.text") is TextPretrainConfig
    cfg = resolve(TextPretrainConfig, "pretrain.text", find_config("pretrain/text")).config
    assert (cfg.model.encoder, cfg.train.epochs, cfg.train.optim.lr, cfg.train.batch_size) == \
        ("roberta-large", 10, 1e-4, 32)
    assert cfg.data.valid_fraction == 0.1 and cfg.data.text_field == "asr_text"
    tiny = resolve(TextPretrainConfig, "pretrain.text", find_config("pretrain/text-tiny")).config
    assert tiny.model.encoder == "tiny-roberta"
