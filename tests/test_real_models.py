"""Whole models of the kinds users bring (issue 16), exported from PyTorch to ONNX with
dynamic dims, converted once, and run at several batch sizes (and sequence lengths)
against onnxruntime on the same ONNX file:

* a BERT encoder from ``transformers`` (random small config) taking int64 ``input_ids``
  and ``attention_mask``, returning the masked-mean-pooled, L2-normalised embedding;
* an OCR-style recogniser: conv features -> width as sequence -> bidirectional LSTM -> CTC logits;
* a YOLO-style detector with a "focus" stem (strided slices concatenated) and SiLU;
* an AlexNet-style network with LRN.

Tolerance: rtol 1e-4, atol 1e-4 of onnxruntime's float32 outputs (the float32 reference
itself differs from PyTorch by about 1e-6 here).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import sparsert  # noqa: E402

nn = torch.nn
RTOL = ATOL = 1e-4


EXPORTERS = ["torchscript", "dynamo"]


def _export(model: Any, args: tuple, names: list[str], dynamic: dict[str, dict[int, str]], path: str,
            exporter: str = "torchscript") -> None:
    """Exports with PyTorch's TorchScript exporter (opset 17) or its torch.export-based one (opset 18,
    needs onnxscript), with the same dims dynamic."""
    if exporter == "torchscript":
        torch.onnx.export(model.eval(), args, path, input_names=names, output_names=["y"], dynamic_axes=dynamic,
                          opset_version=17, dynamo=False)
        return
    pytest.importorskip("onnxscript", reason="torch.onnx.export(dynamo=True) needs onnxscript")
    dims: dict[str, Any] = {}
    shapes = {}
    for name, axes in dynamic.items():
        shapes[name] = {axis: dims.setdefault(label, torch.export.Dim(label, min=2, max=4096))
                        for axis, label in axes.items()}
    torch.onnx.export(model.eval(), args, path, input_names=names, output_names=["y"], dynamic_shapes=shapes,
                      opset_version=18, dynamo=True, verbose=False)


def _check(tmp_path: Any, onnx_path: str, feeds_list: list[dict[str, np.ndarray]]) -> sparsert.Model:
    spr_path = os.path.join(tmp_path, "m.spr")
    sparsert.convert(onnx_path, spr_path)
    model = sparsert.load(spr_path)
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    for feeds in feeds_list:
        want = sess.run(None, feeds)[0]
        got = model.run(feeds)
        shapes = {k: v.shape for k, v in feeds.items()}
        assert got.shape == want.shape, (shapes, got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=str(shapes))
    return model


class _PooledBert(nn.Module):
    """What a sentence encoder returns: the attention-masked mean of the last hidden states,
    L2-normalised (sentence-transformers' mean pooling)."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: Any, attention_mask: Any) -> Any:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_bert_encoder_with_int64_ids_and_mask_any_batch_and_length(tmp_path: Any, seed: int, exporter: str) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=120, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=96, max_position_embeddings=64)
    model = _PooledBert(transformers.BertModel(config))
    ids = torch.randint(0, 120, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    path = os.path.join(tmp_path, "bert.onnx")
    _export(model, (ids, mask), ["input_ids", "attention_mask"],
            {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}, path, exporter)
    rng = np.random.default_rng(seed)
    feeds = []
    for batch, length in [(1, 8), (3, 5), (16, 12), (2, 33)] if exporter == "torchscript" else [(2, 8), (3, 5), (16, 12)]:
        m = np.ones((batch, length), np.int64)
        for b in range(batch):  # padded sentences: the tail of the mask is 0
            m[b, rng.integers(1, length + 1):] = 0
        feeds.append({"input_ids": rng.integers(0, 120, (batch, length)).astype(np.int64), "attention_mask": m})
    sp = _check(tmp_path, path, feeds)
    assert [i.dtype for i in sp.inputs] == ["int64", "int64"]
    assert all(d == -1 for i in sp.inputs for d in i.shape)


class _Recogniser(nn.Module):
    """CRNN: conv features over a text-line image, the width as the sequence, a bidirectional
    LSTM, and per-step class logits (log-softmax, as CTC decoders want)."""

    def __init__(self, classes: int = 11) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d((2, 1)))
        self.rnn = nn.LSTM(16 * 4, 24, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(48, classes)

    def forward(self, x: Any) -> Any:
        f = self.features(x)  # [N, 16, 4, W/2]
        n, c, h, w = f.shape
        seq = f.permute(0, 3, 1, 2).reshape(n, w, c * h)
        out, _ = self.rnn(seq)
        return torch.log_softmax(self.head(out), dim=-1)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_lstm_ocr_recogniser_any_batch_and_width(tmp_path: Any, seed: int, exporter: str) -> None:
    torch.manual_seed(seed)
    model = _Recogniser()
    path = os.path.join(tmp_path, "ocr.onnx")
    # torch.export cannot trace a symbolic width through nn.LSTM: the dynamo export keeps it fixed
    dynamic = {"x": {0: "batch", 3: "width"}} if exporter == "torchscript" else {"x": {0: "batch"}}
    _export(model, (torch.randn(2, 1, 16, 40),), ["x"], dynamic, path, exporter)
    rng = np.random.default_rng(seed)
    sizes = [(1, 40), (3, 24), (16, 64)] if exporter == "torchscript" else [(2, 40), (3, 40), (16, 40)]
    _check(tmp_path, path, [{"x": rng.standard_normal((b, 1, 16, w)).astype(np.float32)} for b, w in sizes])


class _Focus(nn.Module):
    """YOLOv5's stem: four strided slices of the image stacked on channels."""

    def forward(self, x: Any) -> Any:
        return torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1)


class _Detector(nn.Module):
    def __init__(self, anchors: int = 3, classes: int = 4) -> None:
        super().__init__()
        self.focus = _Focus()

        def block(cin: int, cout: int, stride: int) -> nn.Module:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU())

        self.body = nn.Sequential(block(12, 16, 1), block(16, 32, 2), block(32, 32, 1))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = nn.Conv2d(32 + 16, anchors * (5 + classes), 1)
        self.anchors, self.outputs = anchors, 5 + classes

    def forward(self, x: Any) -> Any:
        f = self.focus(x)
        p1 = self.body[0](f)
        p2 = self.body[2](self.body[1](p1))
        y = self.head(torch.cat([self.up(p2), p1], 1))
        n, _, h, w = y.shape
        y = y.view(n, self.anchors, self.outputs, h, w).permute(0, 1, 3, 4, 2)
        return torch.sigmoid(y).reshape(n, -1, self.outputs)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_yolo_style_detector_with_focus_stem_any_batch(tmp_path: Any, seed: int, exporter: str) -> None:
    torch.manual_seed(seed)
    path = os.path.join(tmp_path, "yolo.onnx")
    _export(_Detector(), (torch.randn(2, 3, 32, 32),), ["x"], {"x": {0: "batch"}}, path, exporter)
    rng = np.random.default_rng(seed)
    _check(tmp_path, path, [{"x": rng.standard_normal((b, 3, 32, 32)).astype(np.float32)} for b in (1, 3, 16)])


def test_alexnet_style_with_lrn_any_batch(tmp_path: Any, seed: int) -> None:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 5, stride=2, padding=2), nn.ReLU(), nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
        nn.MaxPool2d(3, 2), nn.Conv2d(16, 24, 3, padding=1), nn.ReLU(), nn.LocalResponseNorm(3),
        nn.MaxPool2d(3, 2), nn.Flatten(), nn.Dropout(), nn.Linear(24 * 3 * 3, 32), nn.ReLU(), nn.Linear(32, 10))
    path = os.path.join(tmp_path, "alexnet.onnx")
    _export(model, (torch.randn(1, 3, 32, 32),), ["x"], {"x": {0: "batch"}}, path)
    rng = np.random.default_rng(seed)
    _check(tmp_path, path, [{"x": rng.standard_normal((b, 3, 32, 32)).astype(np.float32)} for b in (1, 3, 16)])
