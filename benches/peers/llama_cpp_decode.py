#!/usr/bin/env python3
"""Peer side of Keel's decode benchmark: llama.cpp via llama-cpp-python.

Install: pip install -r benches/peers/requirements.txt  (compiles llama.cpp;
needs cmake and a C++ compiler).

Usage:
    python3 benches/peers/llama_cpp_decode.py --model PATH --threads N \
        --prompt-file benches/peers/decode_prompt.txt --max-tokens 64 --runs 3 --json

Per run (after `--warmup` untimed runs, default 1):
  * the context is reset and the prompt tokenized (add_bos=False, special=True,
    so ChatML markers become their special tokens);
  * prompt processing: one llm.eval() over all prompt tokens
    -> pp_tok_s = prompt_tokens / pp time;
  * the first token is picked greedily (argmax of the last logits)
    -> ttft_ms = prompt eval + first argmax;
  * decoding: greedy, EOS ignored, until exactly --max-tokens tokens have been
    generated (the first one included); each further token costs one
    single-token llm.eval() plus an argmax
    -> decode_tok_s = (max_tokens - 1) / (time from first token to last token).

With --json, prints exactly one JSON object on stdout; otherwise a short
human-readable summary.
"""

import argparse
import json
import statistics
import sys
import time


def peak_rss_mb():
    """This process's peak resident memory: VmHWM, which starts afresh at exec (ru_maxrss would carry over the
    memory of the process that started this one)."""
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def main():
    ap = argparse.ArgumentParser(description="llama-cpp-python greedy decode benchmark")
    ap.add_argument("--model", required=True, help="GGUF model path")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--prompt-file", required=True)
    ap.add_argument("--max-tokens", type=int, required=True,
                    help="tokens to generate per run (EOS is ignored)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed ones")
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    if args.max_tokens < 2 or args.runs < 1:
        sys.exit("--max-tokens must be >= 2 and --runs >= 1")

    import llama_cpp
    import numpy as np
    from llama_cpp import Llama

    with open(args.prompt_file, encoding="utf-8") as f:
        prompt = f.read()

    t0 = time.perf_counter()
    llm = Llama(
        model_path=args.model,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_ctx=args.n_ctx,
        logits_all=False,
        verbose=False,
        seed=0,
    )
    load_ms = (time.perf_counter() - t0) * 1e3

    n_vocab = llm.n_vocab()
    ctx = llm._ctx.ctx

    def last_argmax():
        # eval() marks the last token of each batch as an output; read its row.
        ptr = llama_cpp.llama_get_logits_ith(ctx, -1)
        return int(np.ctypeslib.as_array(ptr, shape=(n_vocab,)).argmax())

    def one_run():
        llm.reset()
        tp0 = time.perf_counter()
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        if len(ids) + args.max_tokens > args.n_ctx:
            sys.exit(f"prompt ({len(ids)}) + max tokens exceeds n_ctx {args.n_ctx}")
        t_start = time.perf_counter()
        llm.eval(ids)
        t_pp = time.perf_counter()
        tok = last_argmax()
        t_first = time.perf_counter()
        out = [tok]
        while len(out) < args.max_tokens:
            llm.eval([tok])
            tok = last_argmax()
            out.append(tok)
        t_end = time.perf_counter()
        pp_s = t_pp - t_start
        dec_s = t_end - t_first
        return {
            "prompt_tokens": len(ids),
            "tokenize_ms": round((t_start - tp0) * 1e3, 3),
            "pp_ms": round(pp_s * 1e3, 3),
            "pp_tok_s": round(len(ids) / pp_s, 2),
            "ttft_ms": round((t_first - t_start) * 1e3, 3),
            "decode_ms": round(dec_s * 1e3, 3),
            "decode_tok_s": round((len(out) - 1) / dec_s, 2),
            "total_ms": round((t_end - t_start) * 1e3, 3),
            "generated_ids": out,
        }

    for _ in range(args.warmup):
        one_run()
    runs = [one_run() for _ in range(args.runs)]

    gen = runs[0]["generated_ids"]
    deterministic = all(r["generated_ids"] == gen for r in runs)
    per_run = [{k: v for k, v in r.items() if k != "generated_ids"} for r in runs]
    result = {
        "impl": "llama-cpp-python",
        "version": llama_cpp.__version__,
        "threads": args.threads,
        "prompt_tokens": runs[0]["prompt_tokens"],
        "decode_tokens": args.max_tokens,
        "runs": args.runs,
        "warmup": args.warmup,
        "pp_tok_s_median": round(statistics.median(r["pp_tok_s"] for r in runs), 2),
        "decode_tok_s_median": round(statistics.median(r["decode_tok_s"] for r in runs), 2),
        "ttft_ms_median": round(statistics.median(r["ttft_ms"] for r in runs), 3),
        "load_ms": round(load_ms, 3),
        "peak_rss_mb": peak_rss_mb(),
        "per_run": per_run,
        "generated_ids": gen,
        "generated_text": llm.detokenize(gen, special=True).decode("utf-8", "replace"),
        "deterministic": deterministic,
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(f"llama-cpp-python {result['version']}, {args.threads} threads, "
              f"prompt {result['prompt_tokens']} tok, decode {args.max_tokens} tok, "
              f"{args.runs} runs (load {load_ms:.0f} ms)")
        print(f"  pp     {result['pp_tok_s_median']:9.2f} tok/s (median)")
        print(f"  decode {result['decode_tok_s_median']:9.2f} tok/s (median)")
        print(f"  ttft   {result['ttft_ms_median']:9.3f} ms (median)")


if __name__ == "__main__":
    main()
