"""emotk.nn building blocks: shapes, masking invariance, batch-of-N == N batches of 1."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from emotk.errors import ConfigError, UsageError  # noqa: E402
from emotk.nn.heads import MLPHead  # noqa: E402
from emotk.nn.layer_sum import WeightedLayerSum  # noqa: E402
from emotk.nn.masks import as_mask, lengths_to_mask, mask_to_lengths, pad_sequences  # noqa: E402
from emotk.nn.pooling import AttentiveStatisticsPooling, MeanPooling, build_pooling, masked_mean  # noqa: E402


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- masks -----------------------------------------------------------------------------------------------
def test_lengths_mask_roundtrip_and_errors():
    lengths = torch.tensor([3, 0, 5])
    mask = lengths_to_mask(lengths, 6)
    assert mask.shape == (3, 6) and mask.dtype == torch.bool
    assert mask.tolist()[0] == [True, True, True, False, False, False]
    assert not mask[1].any()
    assert mask_to_lengths(mask).tolist() == [3, 0, 5]
    assert lengths_to_mask([2, 4]).shape == (2, 4)
    with pytest.raises(UsageError):
        lengths_to_mask(torch.tensor([7]), 6)
    with pytest.raises(UsageError):
        lengths_to_mask(torch.tensor([-1]))
    x = torch.zeros(2, 4, 3)
    with pytest.raises(UsageError):
        as_mask(x, mask=torch.ones(2, 5, dtype=torch.bool))
    assert as_mask(x).all()


def test_pad_sequences():
    items = [torch.ones(2, 3), torch.full((4, 3), 2.0)]
    padded, lengths = pad_sequences(items, value=-1.0)
    assert padded.shape == (2, 4, 3) and lengths.tolist() == [2, 4]
    assert padded[0, 2:].eq(-1).all() and padded[1].eq(2).all()
    # time on another axis: (L, T, D) items
    items = [torch.ones(3, 2, 5), torch.ones(3, 6, 5)]
    padded, lengths = pad_sequences(items, time_dim=1)
    assert padded.shape == (2, 3, 6, 5) and lengths.tolist() == [2, 6]
    assert padded[0, :, 2:].eq(0).all()
    with pytest.raises(UsageError):
        pad_sequences([torch.ones(2, 3), torch.ones(2, 4)])


# ---- pooling ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pool", [MeanPooling(8), AttentiveStatisticsPooling(8, hidden=16),
                                  AttentiveStatisticsPooling(8, hidden=16, channel_wise=True)])
def test_pooling_masking_invariance_and_batching(pool):
    torch.manual_seed(0)
    lengths = torch.tensor([5, 9, 2])
    x = torch.randn(3, 9, 8, generator=_gen(1))
    out = pool(x, lengths)
    assert out.shape == (3, pool.out_dim)
    # changing padded values (even to huge numbers / inf) never changes the output
    garbage = x.clone()
    pad = ~lengths_to_mask(lengths, 9)
    garbage[pad] = 1e6
    garbage[0, 7] = float("inf")
    assert torch.allclose(pool(garbage, lengths), out, atol=1e-6)
    # batch of N == N batches of 1 (each item alone, without padding)
    single = torch.cat([pool(x[b : b + 1, : int(n)], torch.tensor([int(n)])) for b, n in enumerate(lengths)])
    assert torch.allclose(single, out, atol=1e-5)
    # a mask gives the same as lengths
    assert torch.allclose(pool(x, mask=lengths_to_mask(lengths, 9)), out)


def test_mean_pooling_values_and_empty_item():
    x = torch.tensor([[[1.0], [3.0], [100.0]], [[7.0], [7.0], [7.0]]])
    out = masked_mean(x, lengths_to_mask(torch.tensor([2, 0]), 3))
    assert out.tolist() == [[2.0], [0.0]]


def test_attentive_statistics_matches_manual_and_grads_are_finite():
    pool = AttentiveStatisticsPooling(4, hidden=6)
    x = torch.randn(2, 5, 4, generator=_gen(2), requires_grad=True)
    lengths = torch.tensor([5, 0])  # an empty item must not make NaN gradients
    out = pool(x, lengths)
    assert out[1].eq(0).all()
    scores = pool.attention(x[0].detach())  # (T, 1)
    a = torch.softmax(scores, dim=0)
    mean = (a * x[0].detach()).sum(0)
    std = ((a * x[0].detach() ** 2).sum(0) - mean**2).clamp(min=1e-6).sqrt()
    assert torch.allclose(out[0], torch.cat([mean, std]), atol=1e-5)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in pool.parameters())
    assert x.grad[1].eq(0).all()


def test_build_pooling():
    assert build_pooling("mean", 6).out_dim == 6
    assert build_pooling("attentive_stats", 6, hidden=4).out_dim == 12
    with pytest.raises(ConfigError, match="did you mean 'mean'"):
        build_pooling("meen", 6)


# ---- layer sum ---------------------------------------------------------------------------------------------
def test_weighted_layer_sum():
    layer_sum = WeightedLayerSum(3)
    h = torch.randn(2, 3, 4, 5, generator=_gen(3))
    out = layer_sum(h)
    assert out.shape == (2, 4, 5)
    assert torch.allclose(out, h.mean(dim=1), atol=1e-6)  # equal weights at init
    assert torch.allclose(layer_sum.weights.sum(), torch.tensor(1.0))
    with torch.no_grad():
        layer_sum.logits.copy_(torch.tensor([0.0, 50.0, 0.0]))
    assert torch.allclose(layer_sum(h), h[:, 1], atol=1e-5)  # convex: a dominant weight selects its layer
    assert torch.allclose(layer_sum(list(h.unbind(1))), layer_sum(h))
    with pytest.raises(UsageError):
        layer_sum(torch.randn(2, 4, 4, 5))
    one = WeightedLayerSum(1)
    assert not one.logits.requires_grad and torch.equal(one(h[:, :1]), h[:, 0])
    normed = WeightedLayerSum(3, layer_norm=True)(h)
    assert normed.shape == (2, 4, 5) and not torch.allclose(normed, out)


def test_layer_sum_learns():
    torch.manual_seed(0)
    layer_sum = WeightedLayerSum(3)
    h = torch.randn(8, 3, 4, 2, generator=_gen(4))
    target = h[:, 2]
    opt = torch.optim.SGD(layer_sum.parameters(), lr=5.0)
    first = None
    for _ in range(30):
        loss = ((layer_sum(h) - target) ** 2).mean()
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first
    assert int(layer_sum.weights.argmax()) == 2


# ---- heads -------------------------------------------------------------------------------------------------
def test_mlp_head_variants():
    head = MLPHead(12, 4, hidden=8, dropout=0.1)
    assert head(torch.randn(3, 12)).shape == (3, 4)
    assert any(isinstance(m, torch.nn.ReLU) for m in head.modules())
    ref = MLPHead(12, 4, hidden=8, compat="reference")
    assert not any(isinstance(m, torch.nn.ReLU) for m in ref.modules())
    # the reference head is linear overall: f(a + b) = f(a) + f(b) - f(0)
    a, b, z = torch.randn(1, 12), torch.randn(1, 12), torch.zeros(1, 12)
    assert torch.allclose(ref(a + b), ref(a) + ref(b) - ref(z), atol=1e-5)
    assert not torch.allclose(head.eval()(a + b), head(a) + head(b) - head(z), atol=1e-3)
    assert sum(isinstance(m, torch.nn.Linear) for m in MLPHead(5, 2, hidden=0).modules()) == 1
    with pytest.raises(ConfigError):
        MLPHead(5, 2, compat="paper")
    with pytest.raises(ConfigError):
        MLPHead(5, 0)
