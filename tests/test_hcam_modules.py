"""HCAM networks (emotk.nn.hcam), the attention block, the dialogue masks and the HCAM losses.

Full-size parameter counts (asserted exactly in ``test_full_size_parameter_counts``):

* stage I text head on RoBERTa-large (D = 1024, last 4 layers -> 4096, bi-GRU 256, 6 classes): 6,690,822
* stage I speech head on HuBERT-large (D = 1024, 1D-CNN 128, 6 classes): 148,486
* stage II thesis (in 512, bi-GRU 2x200, attention 360/3, FFN 360, 6 classes): 2,275,806
* stage II reference (in 512, four 2-layer bi-GRU 200 branches + attention 360/3, skip 360, 6 classes): 8,247,486
  (causal: forward GRUs of hidden 400, 10,167,486)
* stage III (text 360, speech 360, dim 60, 3 heads, 2 layers, FFN 120, 6 classes): 226,806
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from emotk import losses as L  # noqa: E402
from emotk.errors import ConfigError, UsageError  # noqa: E402
from emotk.nn.attention import AttentionBlock, masked_softmax  # noqa: E402
from emotk.nn.hcam import (  # noqa: E402
    HcamContext,
    HcamContextReference,
    HcamFusion,
    HcamSpeechUtteranceHead,
    HcamTextUtteranceHead,
    build_context,
    count_parameters,
)
from emotk.nn.masks import lengths_to_mask, turn_attention_mask  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

C = 4


def _dialogues(lengths, dim, seed=0, dtype=torch.float64, garbage=float("nan")):
    """A padded batch: features (B, T, dim) with ``garbage`` on padding, mask, speakers (-1 on padding), labels."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    mask = lengths_to_mask(lengths)
    b, t = mask.shape
    x = torch.randn(b, t, dim, generator=g, dtype=dtype).masked_fill(~mask[..., None], garbage)
    speaker = torch.randint(0, 2, (b, t), generator=g).masked_fill(~mask, -1)
    labels = torch.randint(0, C, (b, t), generator=g).masked_fill(~mask, -100)
    return x, mask, speaker, labels


def _small_models(causal=False):
    torch.manual_seed(0)
    return {
        "thesis": HcamContext(6, C, gru_hidden=5, gru_layers=2, attention_dim=12, heads=3, causal=causal),
        "reference": HcamContextReference(6, C, gru_hidden=5, gru_layers=2, attention_dim=12, heads=3,
                                          global_window=3, skip_dim=4, causal=causal),
    }


# ---- masks -----------------------------------------------------------------------------------------------
def test_turn_attention_masks_by_hand():
    mask = torch.tensor([[True, True, True, True, False]])
    speaker = torch.tensor([[0, 1, 0, 0, -1]])
    glob = turn_attention_mask(mask)[0].int().tolist()
    assert glob == [[1, 1, 1, 1, 0]] * 4 + [[0] * 5]
    local = turn_attention_mask(mask, kind="local")[0].int().tolist()
    assert local == [[1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 0], [0] * 5]
    assert turn_attention_mask(mask, kind="global", window=1).equal(turn_attention_mask(mask, kind="local"))
    spk = turn_attention_mask(mask, speaker, "speaker")[0].int().tolist()
    assert spk == [[1, 0, 1, 1, 0], [0, 1, 0, 0, 0], [1, 0, 1, 1, 0], [1, 0, 1, 1, 0], [0] * 5]
    lis = turn_attention_mask(mask, speaker, "listener")[0].int().tolist()
    assert lis == [[0, 1, 0, 0, 0], [1, 0, 1, 1, 0], [0, 1, 0, 0, 0], [0, 1, 0, 0, 0], [0] * 5]
    causal = turn_attention_mask(mask, speaker, "listener", causal=True)[0].int().tolist()
    assert causal == [[0] * 5, [1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 1, 0, 0, 0], [0] * 5]
    assert turn_attention_mask(mask, causal=True)[0].int().tolist()[2] == [1, 1, 1, 0, 0]
    with pytest.raises(UsageError, match="speaker"):
        turn_attention_mask(mask, kind="listener")
    with pytest.raises(UsageError, match="did you mean"):
        turn_attention_mask(mask, kind="globl")


def test_masked_softmax_empty_rows_are_zero_not_nan():
    scores = torch.randn(2, 3, requires_grad=True)
    allowed = torch.tensor([[True, False, True], [False, False, False]])
    w = masked_softmax(scores, allowed)
    assert torch.isfinite(w).all() and w[1].eq(0).all()
    assert w[0, 1] == 0 and w[0].sum().item() == pytest.approx(1.0)
    w.sum().backward()
    assert torch.isfinite(scores.grad).all()


def test_attention_block_equation_single_head():
    torch.manual_seed(0)
    block = AttentionBlock(4, 4, heads=1).double()
    x = torch.randn(1, 3, 4, dtype=torch.float64)
    q, k, v = block.q(x), block.k(x), block.v(x)
    expected = torch.nn.functional.layer_norm(q + torch.softmax(q @ k.transpose(1, 2) / 2.0, -1) @ v, (4,),
                                              block.norm.weight, block.norm.bias)
    torch.testing.assert_close(block(x), expected)
    with pytest.raises(ConfigError):
        AttentionBlock(4, 10, heads=3)


# ---- stage I -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_text_head_padding_and_batching(pooling):
    torch.manual_seed(0)
    head = HcamTextUtteranceHead(3, C, spliced_layers=4, gru_hidden=5, pooling=pooling).double()
    lengths = torch.tensor([4, 7])
    hidden = torch.randn(2, 6, 7, 3, dtype=torch.float64)  # (B, L=6 layers, N tokens, D)
    hidden[0, :, 4:] = float("nan")
    logits, emb = head(hidden, lengths)
    assert logits.shape == (2, C) and emb.shape == (2, 10) and torch.isfinite(emb).all()
    alone, emb0 = head(hidden[:1, :, :4], torch.tensor([4]))
    torch.testing.assert_close(emb[:1], emb0)
    torch.testing.assert_close(logits[:1], alone)
    # only the last 4 layers matter
    changed = hidden.clone()
    changed[:, :2] = 7.0
    torch.testing.assert_close(head(changed, lengths)[0], logits)
    with pytest.raises(UsageError, match="last 4"):
        head(hidden[:, :3], lengths)


@pytest.mark.parametrize("kernel", [1, 3])
def test_speech_head_padding_and_batching(kernel):
    torch.manual_seed(0)
    head = HcamSpeechUtteranceHead(3, C, conv_dim=8, kernel_size=kernel).double()
    lengths = torch.tensor([5, 9])
    hidden = torch.randn(2, 4, 9, 3, dtype=torch.float64)
    hidden[0, :, 5:] = float("nan")
    logits, emb = head(list(hidden.unbind(1)), lengths)
    assert logits.shape == (2, C) and emb.shape == (2, 8)
    alone, emb0 = head(hidden[:1, :, :5], torch.tensor([5]))
    torch.testing.assert_close(emb[:1], emb0)
    # the layers are summed: permuting them changes nothing
    torch.testing.assert_close(head(hidden.flip(1), lengths)[1][1], emb[1])
    with pytest.raises(ConfigError):
        HcamSpeechUtteranceHead(3, C, kernel_size=2)


# ---- stage II / III: padding and other dialogues change nothing ------------------------------------------------
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("compat", ["thesis", "reference"])
def test_context_batch_equals_each_dialogue_alone(compat, causal):
    model = _small_models(causal)[compat].double().eval()
    lengths = [5, 1, 8]
    x, mask, speaker, _ = _dialogues(lengths, 6)
    logits, emb = model(x, mask, speaker)
    assert logits.shape == (3, 8, C) and emb.shape == (3, 8, model.out_dim)
    assert torch.isfinite(logits[mask]).all() and emb[~mask].eq(0).all()
    for b, n in enumerate(lengths):
        lo, em = model(x[b:b + 1, :n], mask[b:b + 1, :n], speaker[b:b + 1, :n])
        torch.testing.assert_close(logits[b, :n], lo[0])
        torch.testing.assert_close(emb[b, :n], em[0])


@pytest.mark.parametrize("causal", [False, True])
def test_fusion_batch_equals_each_dialogue_alone(causal):
    torch.manual_seed(0)
    model = HcamFusion(6, 5, C, dim=12, heads=3, layers=2, causal=causal).double().eval()
    lengths = [5, 1, 8]
    text, mask, speaker, _ = _dialogues(lengths, 6, seed=1)
    speech, *_ = _dialogues(lengths, 5, seed=2)
    logits, emb = model(text, speech, mask, speaker)
    assert logits.shape == (3, 8, C) and emb.shape == (3, 8, 24) and emb[~mask].eq(0).all()
    for b, n in enumerate(lengths):
        lo, em = model(text[b:b + 1, :n], speech[b:b + 1, :n], mask[b:b + 1, :n])
        torch.testing.assert_close(logits[b, :n], lo[0])
        torch.testing.assert_close(emb[b, :n], em[0])


# ---- causal: future turns change nothing earlier ------------------------------------------------------------
def _change_future(x, speaker, k):
    x2, s2 = x.clone(), speaker.clone()
    x2[:, k:] = torch.randn_like(x2[:, k:]) * 5
    s2[:, k:] = 1 - s2[:, k:].clamp(min=0)
    return x2, s2


@pytest.mark.parametrize("compat", ["thesis", "reference"])
def test_causal_context_ignores_future(compat):
    x, mask, speaker, _ = _dialogues([7, 7], 6, garbage=0.0)
    k = 4
    x2, s2 = _change_future(x, speaker, k)
    for causal, same in ((True, True), (False, False)):
        model = _small_models(causal)[compat].double().eval()
        before, after = model(x, mask, speaker)[0], model(x2, mask, s2)[0]
        assert torch.allclose(before[:, :k], after[:, :k]) is same, (compat, causal)
        assert not torch.allclose(before[:, k:], after[:, k:])


def test_causal_fusion_ignores_future():
    text, mask, _, _ = _dialogues([7, 7], 6, seed=1, garbage=0.0)
    speech, *_ = _dialogues([7, 7], 5, seed=2, garbage=0.0)
    k = 3
    for causal, same in ((True, True), (False, False)):
        torch.manual_seed(0)
        model = HcamFusion(6, 5, C, dim=12, heads=3, causal=causal).double().eval()
        t2, s2 = text.clone(), speech.clone()
        t2[:, k:] += 3.0
        s2[:, k:] -= 3.0
        before, after = model(text, speech, mask)[0], model(t2, s2, mask)[0]
        assert torch.allclose(before[:, :k], after[:, :k]) is same, causal


# ---- online: step() turn by turn == the batch causal forward ------------------------------------------------------
def test_online_steps_equal_batch_causal():
    lengths = [7, 4]
    x, mask, speaker, _ = _dialogues(lengths, 6, garbage=0.0)
    speech, *_ = _dialogues(lengths, 5, seed=2, garbage=0.0)
    torch.manual_seed(0)
    fusion = HcamFusion(12, 5, C, dim=12, heads=3, window=2, causal=True).double().eval()
    for compat, model in _small_models(causal=True).items():
        model = model.double().eval()
        logits, emb = model(x, mask, speaker)
        f_logits, f_emb = fusion(emb[..., :12], speech, mask)
        for b, n in enumerate(lengths):
            state, f_state = None, None
            for t in range(n):
                lo, em, state = model.step(x[b, t], int(speaker[b, t]), state)
                torch.testing.assert_close(lo, logits[b, t])
                torch.testing.assert_close(em, emb[b, t])
                flo, fem, f_state = fusion.step(em[:12], speech[b, t], f_state)
                torch.testing.assert_close(flo, f_logits[b, t])
                torch.testing.assert_close(fem, f_emb[b, t])
    with pytest.raises(UsageError, match="causal"):
        _small_models(causal=False)["thesis"].step(x[0, 0])
    with pytest.raises(UsageError, match="speaker"):
        _small_models(causal=True)["reference"].step(x[0, 0])


# ---- gradients ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [False, True])
def test_gradients_reach_every_parameter(causal):
    x, mask, speaker, labels = _dialogues([6, 3], 6, garbage=0.0, dtype=torch.float32)
    speaker[1, :3] = 0  # a monologue: its listener rows are empty
    loss = L.build_loss("ce_supcon", beta=0.5, temperature=0.5)
    for model in _small_models(causal).values():
        logits, emb = model(x, mask, speaker)
        loss(logits, labels, mask=mask, features=emb).backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name
    fusion = HcamFusion(6, 6, C, dim=12, heads=3, causal=causal)
    logits, emb = fusion(x, x.flip(-1), mask)
    loss(logits, labels, mask=mask, features=emb).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in fusion.parameters())


# ---- each stage overfits a few random dialogues ---------------------------------------------------------------
def _fit(model, forward, labels, mask, steps=100, lr=1e-2):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = L.build_loss("ce_supcon", beta=0.5, temperature=0.3)
    ce, con = [], []
    for _ in range(steps):
        logits, emb = forward()
        loss = loss_fn(logits, labels, mask=mask, features=emb)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            ce.append(L.cross_entropy(logits, labels, mask=mask).item())
            con.append(L.supervised_contrastive(emb, labels, 0.3, mask=mask).item())
    with torch.no_grad():
        accuracy = (forward()[0].argmax(-1) == labels)[mask].float().mean().item()
    return ce, con, accuracy


@pytest.mark.parametrize("stage", ["text", "speech", "thesis", "reference", "fusion"])
def test_each_stage_overfits_a_few_dialogues(stage):
    torch.manual_seed(0)
    x, mask, speaker, labels = _dialogues([6, 4, 5], 8, garbage=0.0, dtype=torch.float32)
    if stage in ("text", "speech"):  # utterances: (B, L, N, D) token/frame states, one label each
        g = torch.Generator().manual_seed(3)
        hidden = torch.randn(8, 5, 6, 8, generator=g)
        lengths = torch.tensor([6, 3, 5, 2, 6, 4, 1, 6])
        labels, mask = torch.arange(8) % C, torch.ones(8, dtype=torch.bool)
        model = (HcamTextUtteranceHead(8, C, gru_hidden=16) if stage == "text"
                 else HcamSpeechUtteranceHead(8, C, conv_dim=32))
        ce, con, acc = _fit(model, lambda: model(hidden, lengths), labels, mask)
    elif stage == "fusion":
        model = HcamFusion(8, 8, C, dim=24, heads=3)
        speech = torch.randn_like(x).masked_fill(~mask[..., None], 0)
        ce, con, acc = _fit(model, lambda: model(x, speech, mask), labels, mask)
    else:
        model = build_context(stage, 8, C, gru_hidden=16, attention_dim=24, heads=3)
        ce, con, acc = _fit(model, lambda: model(x, mask, speaker), labels, mask)
    # SupCon has a floor above 0 (log |P(i)| with several positives), so the drop is asserted on each term
    assert ce[-1] < 0.1 * ce[0], (stage, ce[0], ce[-1])
    assert con[-1] < con[0] - 0.3, (stage, con[0], con[-1])
    assert acc == 1.0, stage


# ---- sizes ------------------------------------------------------------------------------------------------------
def _gru(inp, h, layers, directions=2):
    total, width = 0, inp
    for _ in range(layers):
        total += directions * 3 * (h * width + h * h + 2 * h)
        width = h * directions
    return total


def _block(q, d, k=None):
    return (q + 1) * d + 2 * ((k or q) + 1) * d + 2 * d


def test_full_size_parameter_counts():
    """Counts of the full-size configurations (the module docstring lists them); formulas checked by hand."""
    text = HcamTextUtteranceHead(1024, 6)
    assert count_parameters(text) == _gru(4096, 256, 1) + 513 * 6 == 6_690_822
    speech = HcamSpeechUtteranceHead(1024, 6)
    assert count_parameters(speech) == 1025 * 128 + 129 * 128 + 129 * 6 == 148_486
    thesis = HcamContext(512, 6)
    ffn = 361 * 360 * 2 + 720
    assert count_parameters(thesis) == _gru(512, 200, 2) + _block(400, 360) + ffn + 361 * 6 == 2_275_806
    reference = HcamContextReference(512, 6)
    expected = 4 * (_gru(512, 200, 2) + _block(400, 360)) + 513 * 360 + 1801 * 6
    assert count_parameters(reference) == expected == 8_247_486
    # causal keeps the width and about the size (forward GRU of hidden 400 instead of 2 x 200)
    causal = HcamContextReference(512, 6, causal=True)
    assert causal.out_dim == reference.out_dim and 1.0 < count_parameters(causal) / count_parameters(reference) < 1.5
    fusion = HcamFusion(360, 360, 6)
    layer1 = 2 * (_block(360, 60) + _block(60, 60))
    layer2 = 2 * (_block(60, 60) + _block(60, 60))
    assert count_parameters(fusion) == layer1 + layer2 + 121 * 120 * 2 + 240 + 121 * 6 == 226_806
    with pytest.raises(ConfigError):
        build_context("referense", 512, 6)


# ---- losses -------------------------------------------------------------------------------------------------------
def _supcon_numpy(z, labels, tau, printed):
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    losses = []
    for i in range(len(z)):
        others = [a for a in range(len(z)) if printed or a != i]
        positives = [p for p in others if labels[p] == labels[i]]
        if not positives:
            continue
        denom = sum(math.exp(z[i] @ z[a] / tau) for a in others)
        losses.append(-sum(math.log(math.exp(z[i] @ z[p] / tau) / denom) for p in positives) / len(positives))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("form", ["khosla", "printed"])
def test_supcon_equals_hand_computation(form):
    z = np.array([[1.0, 0.0, 0.5], [0.8, 0.3, 0.0], [0.0, 1.0, 0.2], [0.1, 0.9, 1.0], [0.5, 0.5, 0.5],
                  [9.0, 9.0, 9.0]])
    labels = np.array([0, 0, 1, 1, 2, -100])  # class 2 has one sample; the last is ignored
    expected = _supcon_numpy(z[:5], labels[:5], 0.5, form == "printed")
    got = L.supervised_contrastive(torch.tensor(z), torch.tensor(labels), 0.5, form=form).item()
    assert got == pytest.approx(expected, abs=1e-12)
    # (B, T) layout with a padding mask gives the same set
    zt = torch.tensor(np.concatenate([z[:5], [[3.0, 1.0, 2.0]]]).reshape(2, 3, 3))
    lt = torch.tensor([[0, 0, 1], [1, 2, 0]])
    keep = torch.tensor([[True, True, True], [True, True, False]])
    assert L.supervised_contrastive(zt, lt, 0.5, mask=keep, form=form).item() == pytest.approx(expected, abs=1e-12)


def test_supcon_forms_differ_and_errors():
    z = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])
    khosla = L.supervised_contrastive(z, labels, 1.0).item()
    printed = L.supervised_contrastive(z, labels, 1.0, form="printed").item()
    assert khosla == pytest.approx(math.log(1 + 1 / math.e), abs=1e-12)  # the lone anchor is left out
    assert printed == pytest.approx(_supcon_numpy(z.numpy(), labels.numpy(), 1.0, True), abs=1e-12)
    assert printed != pytest.approx(khosla)
    with pytest.raises(ConfigError, match="form"):
        L.supervised_contrastive(z, labels, form="paper")


def test_ce_supcon_combination_and_registry():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, C, generator=g, dtype=torch.float64, requires_grad=True)
    feats = torch.randn(2, 5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[0, 1, 1, 2, -100], [0, 2, 3, 3, 1]])
    mask = torch.tensor([[True] * 5, [True, True, True, True, False]])
    ce = L.cross_entropy(logits, target, mask=mask)
    con = L.supervised_contrastive(feats, target, 0.2, mask=mask, form="printed")
    loss = L.build_loss("ce_supcon", beta=0.3, temperature=0.2, form="printed")
    value = loss(logits, target, mask=mask, features=feats)
    assert value.item() == pytest.approx(0.3 * ce.item() + 0.7 * con.item(), abs=1e-12)
    value.backward()
    assert logits.grad.abs().sum() > 0 and feats.grad.abs().sum() > 0
    assert feats.grad[1, 4].eq(0).all() and logits.grad[0, 4].eq(0).all()  # padding / ignored get nothing
    assert L.ce_supcon(logits, target, feats, beta=1.0, mask=mask).item() == pytest.approx(ce.item())
    with pytest.raises(UsageError, match="features"):
        loss(logits, target, mask=mask)
    with pytest.raises(UsageError, match="did you mean"):
        loss(logits, target, mask=mask, feature=feats)
    assert loss.batch_args == ("features",) and L.build_loss("ce").batch_args == ()
    # a task passes the same tensors whatever the loss: plain CE drops features
    assert L.build_loss("ce")(logits, target, mask=mask, features=feats).item() == pytest.approx(ce.item())
    with pytest.raises(ConfigError, match="beta"):
        L.ce_supcon(logits, target, feats, beta=1.5)
    with pytest.raises(ConfigError, match="temprature"):
        L.build_loss("ce_supcon", temprature=0.1)
