"""Losses and gradient reversal: hand-computed values, equivalences, masking and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emotk import losses as L
from emotk.errors import ConfigError, DataError
from emotk.nn.grl import GradientReversal, gradient_reversal, grl_coefficient

LN3 = math.log(3.0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread avoids thread-pool spin (ms per op when the cores are busy)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _close(a: torch.Tensor, b: torch.Tensor, msg: str = "") -> None:
    # (torch.testing.assert_close would import torch.distributed, ~1 s)
    assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-7, atol=1e-12), msg


def _rand(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------------------------ hand-computed values


def test_cross_entropy_and_focal_hand_values():
    logits = torch.tensor([[0.0, 0.0], [LN3, 0.0]], dtype=torch.float64)  # p_t = 1/2 and 3/4
    target = torch.tensor([0, 0])
    ce = (math.log(2) + math.log(4 / 3)) / 2
    assert L.cross_entropy(logits, target).item() == pytest.approx(ce, abs=1e-12)
    focal = (0.25 * math.log(2) + (1 / 16) * math.log(4 / 3)) / 2
    assert L.focal_loss(logits, target, gamma=2).item() == pytest.approx(focal, abs=1e-12)
    # weighted: PyTorch convention, sum(w_y * l) / sum(w_y)
    w = [2.0, 1.0]
    target2 = torch.tensor([0, 1])
    l0, l1 = math.log(2), -math.log(1 / 4)
    assert L.cross_entropy(logits, target2, weight=w).item() == pytest.approx((2 * l0 + l1) / 3, abs=1e-12)
    wf = (2 * 0.25 * l0 + (0.75 ** 2) * l1) / 3
    assert L.focal_loss(logits, target2, gamma=2, weight=w).item() == pytest.approx(wf, abs=1e-12)


def test_class_weights_eq_4_28():
    w = L.class_weights([10, 30, 60])  # N = 100, C = 3
    np.testing.assert_allclose(w.numpy(), [100 / 30, 100 / 90, 100 / 180], rtol=1e-6)
    # C counts every class, also an empty one, whose weight is 0 instead of infinity
    w0 = L.class_weights([4, 0, 12])
    np.testing.assert_allclose(w0.numpy(), [16 / 12, 0.0, 16 / 36], rtol=1e-6)
    with pytest.raises(DataError):
        L.class_weights([1, -1])
    with pytest.raises(DataError):
        L.class_weights([0, 0])


def test_vs_loss_hand_value_and_reduction_to_weighted_ce():
    # counts [1, 3]: Δ = [1/3, 1], ι = [log 1/4, log 3/4]; logits [3, 0], target 0 -> loss = log((e + 3) / e)
    logits = torch.tensor([[3.0, 0.0]], dtype=torch.float64)
    value = L.vs_loss(logits, torch.tensor([0]), [1, 3], gamma=1.0, tau=1.0, weight=None).item()
    assert value == pytest.approx(math.log((math.e + 3) / math.e), abs=1e-12)

    logits, target, counts = _rand(0, 16, 4), torch.randint(0, 4, (16,), generator=torch.Generator().manual_seed(1)), \
        [5, 20, 50, 100]
    vs = L.vs_loss(logits, target, counts, gamma=0.0, tau=0.0)
    wce = L.weighted_cross_entropy(logits, target, counts)
    assert vs.item() == pytest.approx(wce.item(), abs=1e-12)
    ref = F.cross_entropy(logits, target, weight=L.class_weights(counts).double())
    assert wce.item() == pytest.approx(ref.item(), abs=1e-12)
    # the adjustment favours rare classes: the logit-adjusted loss differs from plain weighted CE
    assert L.vs_loss(logits, target, counts).item() != pytest.approx(wce.item(), abs=1e-6)


def test_focal_gamma_zero_equals_ce_and_matches_torch():
    logits, target = _rand(2, 3, 5, 6), torch.randint(0, 6, (3, 5), generator=torch.Generator().manual_seed(3))
    ce = L.cross_entropy(logits, target)
    assert L.focal_loss(logits, target, gamma=0).item() == pytest.approx(ce.item(), abs=1e-12)
    assert ce.item() == pytest.approx(F.cross_entropy(logits.reshape(-1, 6), target.reshape(-1)).item(), abs=1e-12)
    counts = [3, 1, 4, 1, 5, 9]
    assert L.weighted_focal_loss(logits, target, counts, gamma=0).item() == pytest.approx(
        L.weighted_cross_entropy(logits, target, counts).item(), abs=1e-12)
    # focusing lowers the loss of every element (p_t < 1)
    assert L.focal_loss(logits, target, gamma=2).item() < ce.item()


def test_kl_consistency_hand_value_and_direction():
    p = torch.tensor([[0.0, LN3]], dtype=torch.float64)  # softmax -> [1/4, 3/4]
    q = torch.zeros(1, 2, dtype=torch.float64)  # uniform
    expected = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert L.kl_consistency(p, q).item() == pytest.approx(expected, abs=1e-12)
    assert L.kl_consistency(q, p).item() != pytest.approx(expected, abs=1e-6)  # directional
    a, b = _rand(4, 7, 5), _rand(5, 7, 5)
    ref = F.kl_div(F.log_softmax(b, -1), F.log_softmax(a, -1), log_target=True, reduction="batchmean")
    assert L.kl_consistency(a, b).item() == pytest.approx(ref.item(), abs=1e-12)


def test_supcon_hand_value():
    z = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])  # anchor 3 has no positive: excluded
    value = L.supervised_contrastive(z, labels, temperature=1.0).item()
    assert value == pytest.approx(math.log(1 + 1 / math.e), abs=1e-12)


def test_ccc_hand_value_identity_negation_and_numpy():
    pred = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    assert L.ccc(pred, 2 * pred).item() == pytest.approx(8 / 22, abs=1e-9)
    x = _rand(6, 50, 3)
    np.testing.assert_allclose(L.ccc(x, x).numpy(), 1.0, atol=1e-9)
    xc = x - x.mean(dim=0)  # -1 needs equal means: CCC also penalises the offset between the series
    np.testing.assert_allclose(L.ccc(xc, -xc).numpy(), -1.0, atol=1e-9)
    assert (L.ccc(x + 1.0, -(x + 1.0)) > -1.0).all()
    y = 0.5 * x + _rand(7, 50, 3)
    xn, yn = x.numpy(), y.numpy()
    ref = [2 * np.cov(xn[:, d], yn[:, d], bias=True)[0, 1]
           / (xn[:, d].var() + yn[:, d].var() + (xn[:, d].mean() - yn[:, d].mean()) ** 2) for d in range(3)]
    np.testing.assert_allclose(L.ccc(x, y).numpy(), ref, atol=1e-7)  # eps=1e-8 in the denominator
    assert L.ccc_loss(x, y).item() == pytest.approx(1 - float(np.mean(ref)), abs=1e-7)


def test_masked_mse_l1_values():
    pred = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    target = torch.tensor([[0.0, 0.0], [3.0, 1.0]])
    assert L.masked_mse(pred, target).item() == pytest.approx((1 + 4 + 0 + 16) / 4)
    mask = torch.tensor([[True, False], [True, True]])
    assert L.masked_mse(pred, target, mask).item() == pytest.approx((1 + 0 + 16) / 3)
    assert L.masked_l1(pred, target, mask).item() == pytest.approx((1 + 0 + 4) / 3)
    # a (B,) mask over (B, T) frames broadcasts over time
    assert L.masked_l1(pred, target, torch.tensor([False, True])).item() == pytest.approx(2.0)


# ----------------------------------------------------------------------------------------------- masking


def _poison(x: torch.Tensor, keep: torch.Tensor, value: float) -> torch.Tensor:
    shape = tuple(keep.shape) + (1,) * (x.dim() - keep.dim())
    return torch.where(keep.reshape(shape), x, torch.full_like(x, value))


@pytest.mark.parametrize("value", [7.5, float("nan"), float("inf")])
def test_padding_never_changes_the_loss_or_gradient(value):
    g = torch.Generator().manual_seed(11)
    logits = torch.randn(3, 6, 4, generator=g, dtype=torch.float64)
    target = torch.randint(0, 4, (3, 6), generator=g)
    keep = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    counts = [10, 5, 2, 1]
    cls_losses = {
        "ce": lambda z, t: L.cross_entropy(z, t, keep),
        "wce": lambda z, t: L.weighted_cross_entropy(z, t, counts, keep),
        "focal": lambda z, t: L.focal_loss(z, t, 2.0, mask=keep),
        "wfocal": lambda z, t: L.weighted_focal_loss(z, t, counts, mask=keep),
        "vs": lambda z, t: L.vs_loss(z, t, counts, mask=keep),
        "kl": lambda z, t: L.kl_consistency(z, z.flip(-1) * 0.5, keep),
    }
    poisoned_target = torch.where(keep, target, torch.full_like(target, 3))
    for name, fn in cls_losses.items():
        a = logits.clone().requires_grad_(True)
        b = _poison(logits, keep, value).requires_grad_(True)
        la, lb = fn(a, target), fn(b, poisoned_target)
        assert torch.isfinite(lb), name
        assert la.item() == pytest.approx(lb.item(), abs=1e-12), name
        la.backward()
        lb.backward()
        assert torch.isfinite(b.grad).all(), name
        _close(a.grad, b.grad, name)
        assert (b.grad[~keep] == 0).all(), name

    pred, tgt = _rand(12, 3, 6, 2), _rand(13, 3, 6, 2)
    for name, fn in {"mse": L.masked_mse, "l1": L.masked_l1, "ccc": L.ccc_loss}.items():
        a = pred.clone().requires_grad_(True)
        b = _poison(pred, keep, value).requires_grad_(True)
        la, lb = fn(a, tgt, keep), fn(b, _poison(tgt, keep, value), keep)
        assert la.item() == pytest.approx(lb.item(), abs=1e-12), name
        la.backward()
        lb.backward()
        _close(a.grad, b.grad, name)

    feats, lab = _rand(14, 3, 6, 5), torch.randint(0, 2, (3, 6), generator=g)
    a = L.supervised_contrastive(feats, lab, 0.5, keep)
    b = L.supervised_contrastive(_poison(feats, keep, value), torch.where(keep, lab, 1 - lab), 0.5, keep)
    assert a.item() == pytest.approx(b.item(), abs=1e-12)
    va, vb = _rand(15, 3, 6, 5), _rand(16, 3, 6, 5)
    a = L.supervised_contrastive_two_view(va, vb, lab, keep, temperature=0.1)
    b = L.supervised_contrastive_two_view(_poison(va, keep, value), _poison(vb, keep, value), lab, keep, 0.1)
    assert a.item() == pytest.approx(b.item(), abs=1e-12)


def test_ignore_index_and_empty_selection():
    logits, target = _rand(20, 5, 3), torch.tensor([0, 2, -100, 1, -100])
    keep = target != -100
    assert L.cross_entropy(logits, target).item() == pytest.approx(
        L.cross_entropy(logits[keep], target[keep]).item(), abs=1e-12)
    z = logits.clone().requires_grad_(True)
    out = L.focal_loss(z, torch.full((5,), -100))
    assert out.item() == 0.0
    out.backward()  # still part of the graph
    assert (z.grad == 0).all()
    none = L.cross_entropy(logits, target, reduction="none")
    assert none.shape == (5,) and none[~keep].eq(0).all() and (none[keep] > 0).all()


def test_bad_inputs_raise_data_errors():
    with pytest.raises(DataError, match="outside"):
        L.cross_entropy(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(DataError, match="mask shape"):
        L.cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]), mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(DataError, match="weight"):
        L.cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]), weight=[1.0, 2.0])


# ------------------------------------------------------------------------------------------- contrastive


def test_supcon_invariants():
    g = torch.Generator().manual_seed(21)
    labels = torch.arange(4).repeat_interleave(6)
    feats = torch.randn(24, 16, generator=g, dtype=torch.float64)
    base = L.supervised_contrastive(feats, labels, 0.1)
    scaled = L.supervised_contrastive(feats * 37.0, labels, 0.1)
    assert base.item() == pytest.approx(scaled.item(), abs=1e-10)
    centres = torch.eye(16, dtype=torch.float64)[:4] * 5
    clustered = centres[labels] + 0.01 * torch.randn(24, 16, generator=g, dtype=torch.float64)
    assert L.supervised_contrastive(clustered, labels, 0.1).item() < base.item() - 1.0
    # every label unique: no anchor has a positive -> 0
    assert L.supervised_contrastive(feats[:4], torch.arange(4), 0.1).item() == 0.0


def test_supcon_two_view_is_per_conversation():
    g = torch.Generator().manual_seed(22)
    a = torch.randn(2, 5, 8, generator=g, dtype=torch.float64)
    b = torch.randn(2, 5, 8, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 5), generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    both = L.supervised_contrastive_two_view(a, b, labels, mask, temperature=0.5)
    per = [L.supervised_contrastive_two_view(a[i, mask[i]], b[i, mask[i]], labels[i, mask[i]], temperature=0.5)
           for i in range(2)]
    assert both.item() == pytest.approx(sum(p.item() for p in per) / 2, abs=1e-12)
    # one conversation of 2N states equals plain supcon over the stacked views with duplicated labels
    n = int(mask[1].sum())
    flat = L.supervised_contrastive(torch.cat([a[1, :n], b[1, :n]]), torch.cat([labels[1, :n]] * 2), 0.5)
    assert per[1].item() == pytest.approx(flat.item(), abs=1e-12)
    # aligned views with class-clustered states score lower than random ones
    centres = torch.eye(8, dtype=torch.float64)[:3] * 4
    tight = centres[labels] + 0.01 * a
    assert L.supervised_contrastive_two_view(tight, tight.clone(), labels, mask, 0.5).item() < both.item()


# ---------------------------------------------------------------------------------------------- registry


def test_build_loss_registry():
    logits, target = _rand(30, 6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    assert L.build_loss("ce")(logits, target).item() == pytest.approx(L.cross_entropy(logits, target).item())
    vs = L.build_loss("vs", class_counts=[1, 2, 3], gamma=0.3)
    assert vs(logits, target).item() == pytest.approx(L.vs_loss(logits, target, [1, 2, 3]).item())
    assert L.build_loss("wfocal", class_counts=[1, 2, 3])(logits, target).item() == pytest.approx(
        L.weighted_focal_loss(logits, target, [1, 2, 3]).item())
    x, y = _rand(31, 10, 3), _rand(32, 10, 3)
    assert L.build_loss("ccc")(x, y).item() == pytest.approx(L.ccc_loss(x, y).item())
    assert L.build_loss("mse")(x, y).item() == pytest.approx(F.mse_loss(x, y).item())
    assert L.build_loss("l1")(x, y).item() == pytest.approx(F.l1_loss(x, y).item())
    with pytest.raises(ConfigError, match="did you mean 'focal'"):
        L.build_loss("focla")
    with pytest.raises(ConfigError, match="did you mean 'gamma'"):
        L.build_loss("focal", gama=2)
    with pytest.raises(ConfigError, match="class_counts"):
        L.build_loss("wce")


# ------------------------------------------------------------------------------------- gradient reversal


@pytest.mark.parametrize("lam", [0.5, 10.0])
def test_gradient_reversal_sign_and_scale(lam):
    x = _rand(40, 4, 3).requires_grad_(True)
    upstream = _rand(41, 4, 3)
    y = gradient_reversal(x, lam)
    _close(y, x)
    (y * upstream).sum().backward()
    _close(x.grad, -lam * upstream)

    layer = GradientReversal()
    layer.coefficient = lam
    x2 = x.detach().clone().requires_grad_(True)
    (layer(x2) * upstream).sum().backward()
    _close(x2.grad, -lam * upstream)


def test_grl_schedule():
    assert grl_coefficient(0.0) == 0.0
    assert grl_coefficient(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert grl_coefficient(0.5) == pytest.approx(0.9866143, abs=1e-7)
    assert grl_coefficient(1.0) == pytest.approx(0.9999092, abs=1e-7)
    assert grl_coefficient(2.0) == grl_coefficient(1.0)
    layer = GradientReversal()
    assert layer.set_progress(0.5, scale=10.0) == pytest.approx(9.866143, abs=1e-6)
    assert layer.coefficient == pytest.approx(9.866143, abs=1e-6)
