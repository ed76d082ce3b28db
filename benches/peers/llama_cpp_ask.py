#!/usr/bin/env python3
"""Peer side of the memory figure of Keel's decode benchmark: one chat answer with llama-cpp-python, as
`keel ask` gives one, and the process's peak resident memory.

Usage: python3 benches/peers/llama_cpp_ask.py --model PATH --threads N --system TEXT --prompt TEXT [--max-tokens N]

Prints one JSON object: {"peak_rss_mb": …, "completion_tokens": …}. The context is 2,048 tokens, as in
llama_cpp_decode.py.
"""

import argparse
import json

from llama_cpp_decode import peak_rss_mb


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
