#!/usr/bin/env python3
"""Peer side of Keel's embedding benchmark: sentence-transformers on the CPU.

Install (a venv of its own, since torch is large):

    python3 -m venv /root/.cache/keel/st-venv
    /root/.cache/keel/st-venv/bin/pip install -r benches/peers/requirements-memory.txt

Usage:

    /root/.cache/keel/st-venv/bin/python benches/peers/st_embed.py \
        --model-dir /root/.cache/keel/models/all-minilm-l6-v2 --threads 2 \
        --batch-size 32 --texts-file FILE --runs 3 --warmup 1 --json

The model is built from the directory's model.safetensors, tokenizer.json and
config.json exactly as sentence-transformers defines all-MiniLM-L6-v2:
Transformer(max_seq_length=256) -> Pooling(mean) -> Normalize(). Nothing is
fetched from the network.

--texts-file: one text per line. A line that parses as a JSON object with a
"text" field (JSONL) contributes that field, a line that parses as a JSON
string contributes the string, any other line is taken verbatim; blank lines
are skipped.

torch.set_num_threads(--threads) (and one inter-op thread). Loading the model
and --warmup untimed passes come first; then each of --runs timed passes
encodes all n texts with model.encode(batch_size=--batch-size), and its rate is
n / wall time. With --json, prints exactly one JSON object on stdout:

    {"sentences_per_s_median": float, "runs": [sentences/s per run],
     "n": int, "threads": int, "batch_size": int, "warmup": int,
     "load_s": float, "torch": str, "sentence_transformers": str}

otherwise a short human-readable summary.

With --serve (Keel's benchmark uses it, to alternate its passes with Keel's),
after loading and the warm-up it prints one JSON line, {"ready": true, ...}
with the versions, then runs one timed pass for each line read on stdin and
prints {"sentences_per_s": float} for each; it exits at the end of stdin.
"""

import argparse
import json
import os
import statistics
import sys
import time


def read_texts(path):
    texts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            text = line
            if line[:1] in "{\"":
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    obj = None
                if isinstance(obj, dict) and isinstance(obj.get("text"), str):
                    text = obj["text"]
                elif isinstance(obj, str):
                    text = obj
            texts.append(text)
    return texts


def build_model(model_dir, max_seq_length=256):
    try:  # sentence-transformers >= 6 moved the modules
        from sentence_transformers.sentence_transformer.modules import (
            Normalize, Pooling, Transformer)
    except ImportError:
        from sentence_transformers.models import Normalize, Pooling, Transformer
    from sentence_transformers import SentenceTransformer

    transformer = Transformer(model_dir, max_seq_length=max_seq_length)
    dim = transformer.auto_model.config.hidden_size
    pooling = Pooling(dim, pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu")
    model.eval()
    return model


def main():
    ap = argparse.ArgumentParser(description="sentence-transformers CPU embedding throughput")
    ap.add_argument("--model-dir", required=True,
                    help="directory with model.safetensors, tokenizer.json, config.json")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--texts-file", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--max-seq-length", type=int, default=256)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--serve", action="store_true",
                    help="one timed pass per line on stdin, one JSON line per pass on stdout")
    args = ap.parse_args()
    if args.threads < 1 or args.runs < 1 or args.warmup < 0 or args.batch_size < 1:
        ap.error("--threads, --runs and --batch-size must be >= 1, --warmup >= 0")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import sentence_transformers

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set by an earlier parallel region

    texts = read_texts(args.texts_file)
    if not texts:
        sys.exit(f"no texts in {args.texts_file}")

    t0 = time.perf_counter()
    model = build_model(args.model_dir, args.max_seq_length)
    load_s = time.perf_counter() - t0

    def one_pass():
        with torch.inference_mode():
            model.encode(texts, batch_size=args.batch_size, convert_to_numpy=True,
                         show_progress_bar=False)

    for _ in range(args.warmup):
        one_pass()
    if args.serve:
        print(json.dumps({"ready": True, "n": len(texts), "threads": args.threads,
                          "batch_size": args.batch_size, "load_s": round(load_s, 3),
                          "torch": torch.__version__,
                          "sentence_transformers": sentence_transformers.__version__}), flush=True)
        for _ in sys.stdin:
            t = time.perf_counter()
            one_pass()
            print(json.dumps({"sentences_per_s": round(len(texts) / (time.perf_counter() - t), 3)}), flush=True)
        return
    rates = []
    for _ in range(args.runs):
        t = time.perf_counter()
        one_pass()
        rates.append(len(texts) / (time.perf_counter() - t))

    result = {
        "sentences_per_s_median": round(statistics.median(rates), 3),
        "runs": [round(r, 3) for r in rates],
        "n": len(texts),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "load_s": round(load_s, 3),
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['n']} texts, {args.threads} threads, batch {args.batch_size}: "
              f"median {result['sentences_per_s_median']} sentences/s "
              f"(runs {result['runs']}), load {result['load_s']} s")


if __name__ == "__main__":
    main()
