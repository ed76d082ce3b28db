#!/usr/bin/env python3
"""Peer side of the memory figure of Keel's decode benchmark: one chat answer with llama-cpp-python, as
`keel ask` gives one, and the process's peak resident memory.

Usage: python3 benches/peers/llama_cpp_ask.py --model PATH --threads N --system TEXT --prompt TEXT [--max-tokens N]

Prints one JSON object: {"peak_rss_mb": …, "completion_tokens": …}. The context is 2,048 tokens, as in
llama_cpp_decode.py.
"""

import argparse
import json


def peak_rss_mb():
    """VmHWM: this process's own peak (ru_maxrss would carry over the memory of the process that started it)."""
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--system", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()
    from llama_cpp import Llama

    llm = Llama(model_path=args.model, n_threads=args.threads, n_threads_batch=args.threads, n_ctx=2048, verbose=False)
    out = llm.create_chat_completion(
        messages=[{"role": "system", "content": args.system}, {"role": "user", "content": args.prompt}],
        max_tokens=args.max_tokens, temperature=0)
    print(json.dumps({
        "peak_rss_mb": peak_rss_mb(),
        "completion_tokens": out["usage"]["completion_tokens"],
    }))


if __name__ == "__main__":
    main()
