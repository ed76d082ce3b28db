#!/usr/bin/env python3
"""Makes the engine's test models: the pinned SmolLM2 GGUF requantized by llama.cpp's own quantiser
(llama-cpp-python's `llama_model_quantize`) to the other types Keel's engine reads.

Usage: python3 scripts/quantize_test_models.py SOURCE.gguf OUT_DIR [--check models/test-quants.sha256]

Writes OUT_DIR/SmolLM2-135M-Instruct.<TYPE>.gguf for Q8_0, Q4_0, Q4_K_S, Q6_K and Q5_1 (refused by the engine) (files already there with the
pinned checksum are kept). SmolLM2's 576-wide matrices are not whole 256-value K-quant blocks, so llama.cpp
gives those tensors its fallback types (Q5_0 for Q4_K, Q8_0 for Q6_K); the 1536-wide ffn_down tensors get the
K-quant itself. With --check, each file's sha256 is compared with the committed list, and a difference is
reported on stderr as `checksum differs: …` (a llama.cpp built for another CPU may round a K-quant scale
differently; the file is still a valid file of that type, so the tests go on with it and show the warning).
With --strict a difference is an error.
Progress goes to stderr; on success the output paths are printed, one per line.
"""

import argparse
import hashlib
import os
import sys

TYPES = {"Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
         "Q4_K_S": "LLAMA_FTYPE_MOSTLY_Q4_K_S", "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K",
         # A type the engine does not read, for the test that it is refused with a clear message.
         "Q5_1": "LLAMA_FTYPE_MOSTLY_Q5_1"}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("source")
    ap.add_argument("out_dir")
    ap.add_argument("--check", help="a file of `sha256  name` lines the outputs are compared with")
    ap.add_argument("--strict", action="store_true", help="a checksum that differs is an error")
    args = ap.parse_args()
    import llama_cpp

    pinned = {}
    if args.check:
        with open(args.check, encoding="utf-8") as f:
            for line in f:
                if line.strip() and not line.startswith("#"):
                    digest, name = line.split()
                    pinned[name] = digest
    os.makedirs(args.out_dir, exist_ok=True)
    stem = os.path.basename(args.source).rsplit(".", 2)[0]
    outs = []
    for name, ftype in TYPES.items():
        out = os.path.join(args.out_dir, f"{stem}.{name}.gguf")
        want = pinned.get(os.path.basename(out))
        if os.path.exists(out) and want and sha256(out) == want:
            outs.append(out)
            continue
        print(f"quantising {os.path.basename(args.source)} to {name}", file=sys.stderr, flush=True)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, ftype)
        params.allow_requantize = True
        # One type for every tensor that can take it (no mixed "_S/_M" recipes), the fallbacks aside.
        params.pure = True
        params.nthread = os.cpu_count() or 1
        tmp = out + ".part"
        rc = llama_cpp.llama_model_quantize(args.source.encode(), tmp.encode(), params)
        if rc != 0:
            sys.exit(f"llama_model_quantize failed for {name} (code {rc})")
        os.replace(tmp, out)
        got = sha256(out)
        if args.check and want != got:
            message = (f"{out}: sha256 {got} is not the pinned {want}; llama.cpp's quantiser differs from the one "
                       f"{args.check} was made with (llama-cpp-python==0.3.36)")
            if args.strict:
                sys.exit(message)
            print(f"checksum differs: {message}", file=sys.stderr, flush=True)
        outs.append(out)
    print("\n".join(outs))


if __name__ == "__main__":
    main()
