#!/usr/bin/env bash
# Runs Keel's fuzz targets (fuzz/, cargo-fuzz and libFuzzer) for SECONDS each, one after the other, on their
# committed corpora (fuzz/corpus/<target>/, which grow with what the runs find; minimise them with
# `cargo +nightly fuzz cmin TARGET`) and the inputs of fixed crashes (fuzz/regressions/<target>/).
#
#   scripts/fuzz.sh SECONDS [TARGET...]    all targets, or only those named
#
# Installs what is missing (the nightly toolchain, cargo-fuzz), builds every target once, then prints for each
# target the executions, the corpus size and the crashes found. Exits non-zero if any run left a crash, timeout
# or out-of-memory artifact in fuzz/artifacts/<target>/ (reproduce one with `cargo +nightly fuzz run -O -s none TARGET FILE`).
#
# Builds without AddressSanitizer (`-s none`): Keel's code is safe Rust, and on a small machine ASan's cost in
# build time and speed buys fewer executions. Set FUZZ_SANITIZER=address to use it. Every run is niced.
set -euo pipefail

KEEL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export KEEL_CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
# Its own target dir: the instrumented build shares nothing with the ordinary one.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$KEEL_CACHE/fuzz-target}"
# The tokenizer target reads the built-in chat model's vocabulary (never its weights) from here.
export KEEL_MODELS_DIR="${KEEL_MODELS_DIR:-$KEEL_CACHE/models}"
export PATH="$HOME/.cargo/bin:$PATH"
SANITIZER="${FUZZ_SANITIZER:-none}"
CARGO_FUZZ_VERSION="0.13.2"

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ $# -ge 1 ] && [[ "$1" =~ ^[0-9]+$ ]] || die "usage: scripts/fuzz.sh SECONDS [TARGET...]"
SECONDS_EACH="$1"
shift

ALL_TARGETS=(gguf tokenizer guard_text calculator sse tool_args import_pdf import_html import_md memory_export)
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

# The longest input each target is given: a document or a GGUF header is bigger than a calculator expression.
max_len() {
  case "$1" in
    gguf) echo 65536 ;;
    import_pdf | import_html | import_md) echo 65536 ;;
    memory_export) echo 32768 ;;
    tokenizer | guard_text | sse | tool_args) echo 8192 ;;
    calculator) echo 1024 ;;
    *) echo 4096 ;;
  esac
}

if ! command -v rustup >/dev/null; then
  step "installing rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
if ! rustup toolchain list | grep -q '^nightly'; then
  step "installing the nightly toolchain (cargo-fuzz needs it)"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  step "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
[ -f "$KEEL_MODELS_DIR/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf" ] ||
  die "the tokenizer target needs the chat model in $KEEL_MODELS_DIR: run \`KEEL_MODELS_DIR=$KEEL_MODELS_DIR keel models fetch\`"

cd "$KEEL_ROOT/fuzz"
step "building the fuzz targets (sanitizer: $SANITIZER; target dir $CARGO_TARGET_DIR)"
nice -n 19 cargo +nightly fuzz build -O -s "$SANITIZER" --target-dir "$CARGO_TARGET_DIR"
BIN="$CARGO_TARGET_DIR/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"

failed=()
summary=()
for target in "${TARGETS[@]}"; do
  [ -f "fuzz_targets/$target.rs" ] || die "no fuzz target $target (targets: ${ALL_TARGETS[*]})"
  corpus="corpus/$target"
  # Inputs of fixed crashes, kept apart so that minimising the corpus never drops them; read, never written.
  regressions=()
  [ -d "regressions/$target" ] && regressions=("regressions/$target")
  artifacts="artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  before=$(find "$artifacts" -type f | wc -l)
  log="$(mktemp)"
  step "fuzzing $target for $SECONDS_EACH s"
  # -close_fd_mask=1 keeps what the parsers print on stdout out of the report, which goes to stderr (the log).
  set +e
  # The binary itself, not `cargo fuzz run`, which would build again (and rebuild Keel if a source changed).
  nice -n 19 "$BIN/$target" "$corpus" "${regressions[@]}" \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 -max_len="$(max_len "$target")" \
    -close_fd_mask=1 -print_final_stats=1 -artifact_prefix="$artifacts/" 2>"$log"
  status=$?
  set -e
  tail -n 30 "$log" >&2
  # A run that died without its final stats (killed by a signal) has no count: `?`.
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  after=$(find "$artifacts" -type f | wc -l)
  found=$((after - before))
  size=$(find "$corpus" -type f | wc -l)
  bytes=$(du -sk "$corpus" | cut -f1)
  summary+=("$(printf '%-14s %6s s  %12s executions  corpus %5s files (%s KiB)  crashes %s  exit %s' \
    "$target" "$SECONDS_EACH" "${execs:-?}" "$size" "$bytes" "$found" "$status")")
  if [ "$found" -gt 0 ] || [ "$status" -ne 0 ]; then
    failed+=("$target")
  fi
  # Without ASan a stack overflow kills the process before libFuzzer can save the input: no artifact, exit 139.
  # Run the target under gdb and dump fuzzer::F->CurrentUnitData (CurrentUnitSize bytes) at the SIGSEGV.
  if [ "$found" -eq 0 ] && [ "$status" -ge 128 ]; then
    printf 'warning: %s died of signal %d without saving its input (a stack overflow?)\n' "$target" $((status - 128)) >&2
  fi
  rm -f "$log"
done

step "summary"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  die "crashes, timeouts or out-of-memory in: ${failed[*]} (see fuzz/artifacts/)"
fi
