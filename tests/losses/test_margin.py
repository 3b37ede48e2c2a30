"""Margin losses: hand-computed logits, boundary safety in low precision, CurricularFace's t."""

from __future__ import annotations

import math

import pytest
import torch

from btnet.losses import (
    ArcFace,
    CosFace,
    CurricularFace,
    MarginHead,
    NormalizedClassifier,
    branch_distillation,
    build_margin_loss,
    embedding_distillation,
)

torch.set_num_threads(1)

COS = torch.tensor([[0.8, 0.1, -0.3], [0.2, 0.9, 0.95]])
LABELS = torch.tensor([0, 1])


def test_cosface_matches_hand_computation():
    logits = CosFace(s=64, m=0.4).logits(COS, LABELS)
    expected = 64 * torch.tensor([[0.8 - 0.4, 0.1, -0.3], [0.2, 0.9 - 0.4, 0.95]])
    torch.testing.assert_close(logits, expected)


def test_arcface_matches_hand_computation():
    logits = ArcFace(s=64, m=0.5).logits(COS, LABELS)
    t0 = math.cos(math.acos(0.8) + 0.5)
    t1 = math.cos(math.acos(0.9) + 0.5)
    expected = 64 * torch.tensor([[t0, 0.1, -0.3], [0.2, t1, 0.95]])
    torch.testing.assert_close(logits, expected)


def test_arcface_fallback_past_pi_is_monotonic():
    loss = ArcFace(s=1, m=0.5)
    cos = torch.tensor([[-0.95, 0.0]])  # theta + m > pi
    out = loss.logits(cos, torch.tensor([0]))[0, 0].item()
    assert out == pytest.approx(-0.95 - math.sin(math.pi - 0.5) * 0.5)


def test_curricularface_matches_hand_computation():
    loss = CurricularFace(s=64, m=0.5)
    loss.t.fill_(0.3)
    loss.train()
    logits = loss.logits(COS, LABELS)
    t = 0.99 * 0.3 + 0.01 * (0.8 + 0.9) / 2  # updated before use, as in the original
    b0 = math.cos(math.acos(0.8) + 0.5)
    b1 = math.cos(math.acos(0.9) + 0.5)
    row1_hard = 0.95 * (t + 0.95)  # 0.95 > cos(acos(0.9)+0.5) ~ 0.55: a hard negative
    expected = 64 * torch.tensor([[b0, 0.1, -0.3], [0.2, b1, row1_hard]])
    torch.testing.assert_close(logits, expected)
    assert loss.t.item() == pytest.approx(t)


def test_curricularface_t_frozen_in_eval_mode():
    loss = CurricularFace().eval()
    loss.logits(COS, LABELS)
    assert loss.t.item() == 0.0


@pytest.mark.parametrize("name", ["arcface", "cosface", "curricularface"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_finite_at_the_boundary(name, dtype):
    """cos = +-1 exactly (features equal / opposite to class weights): loss and grads finite."""
    head = MarginHead(4, 3, build_margin_loss(name))
    w = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [-1.0, 0, 0, 0]])
    head.classifier.weight.data.copy_(w)
    emb = torch.tensor([[2.0, 0, 0, 0], [-3.0, 0, 0, 0], [0, 1.0, 0, 0]], dtype=dtype)
    emb.requires_grad_(True)
    labels = torch.tensor([0, 0, 1])  # cos = 1, cos = -1 (target), cos = 1
    loss = head(emb, labels)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(emb.grad).all()
    assert torch.isfinite(head.classifier.weight.grad).all()


def test_classifier_output_is_float32_under_autocast():
    clf = NormalizedClassifier(8, 5)
    x = torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cos = clf(x)
    assert cos.dtype == torch.float32
    assert cos.abs().max() <= 1.0


def test_build_margin_loss_defaults_and_errors():
    assert build_margin_loss("CosFace").m == 0.4
    assert build_margin_loss("arcface").m == 0.5
    assert build_margin_loss("curricular_face").s == 64.0
    with pytest.raises(ValueError, match="arcface"):
        build_margin_loss("softmax")


def test_margin_head_loss_falls_when_fitting():
    torch.manual_seed(0)
    emb = torch.nn.Parameter(torch.randn(16, 8))
    labels = torch.arange(16) % 4
    head = MarginHead(8, 4, build_margin_loss("arcface", s=16))
    opt = torch.optim.SGD([emb, *head.parameters()], lr=0.5)
    first = None
    for _ in range(30):
        loss = head(emb, labels)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_distillation_terms():
    a = torch.randn(2, 3, 4, 4)
    b = a + 1.0
    assert branch_distillation(a, b).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="couple"):
        branch_distillation(a, b[:, :, :2])
    e = torch.randn(3, 8)
    assert embedding_distillation(e, 5 * e).item() == pytest.approx(0.0, abs=1e-6)
    assert embedding_distillation(e, -e).item() == pytest.approx(2.0)


@pytest.mark.parametrize("name", ["arcface", "cosface", "curricularface"])
def test_float64_stays_float64_and_half_is_promoted(name):
    # float64 runs (train.dtype) are for exactness checks: no silent float32 rounding inside.
    torch.manual_seed(0)
    head = MarginHead(8, 5, build_margin_loss(name, s=16.0)).double()
    emb = torch.randn(6, 8, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    cos = head.classifier(emb)
    assert cos.dtype == torch.float64
    assert head.loss.logits(cos, labels).dtype == torch.float64
    head(emb, labels).backward()
    assert emb.grad.dtype == torch.float64
    if name == "curricularface":
        assert head.loss.t.dtype == torch.float64 and head.loss.t.item() != 0.0
    half = head.loss.logits(cos.detach().to(torch.bfloat16), labels)
    assert half.dtype == torch.float32
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    assert branch_distillation(x, x + 1).dtype == torch.float64
    assert embedding_distillation(x.flatten(1), x.flatten(1)).dtype == torch.float64
    assert branch_distillation(x.half(), x.half()).dtype == torch.float32
