#!/usr/bin/env python3
"""Records the shape of every `keel … --json` output into tests/fixtures/cli_json_shapes.json.

Usage: scripts/cli_json_shapes.py KEEL_BINARY [--models DIR] [--out FILE] [--label TEXT]

The CLI's JSON is a contract: scripts read its fields. tests/integration/cli_contract.rs runs the scenario of
tests/fixtures/cli_contract/scenario.json against the `keel` binary being tested and checks that every output
still has every field it had, with the same type, in the shapes this script recorded. Run it against the
binary whose JSON is the reference (for issue 15, the landed code before the restructuring, built to
/work/base-bin/keel) and commit what it writes; never edit the fixture by hand.

A shape is the JSON's structure without its values: {"object": {key: shape}}, {"array": shape of the elements,
merged}, or "null"/"bool"/"integer"/"float"/"string" as keys with the value true; a value seen as several types
(array elements, or a field null in one element and a string in another) has one key per type. The scenario
needs the model files (`keel models fetch` into --models, default $KEEL_MODELS_DIR) and runs the scripted
backend for every run, so it is offline and deterministic.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "cli_contract"
GGUF = "smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf"


def shape(value):
    """The shape of a JSON value (see the header)."""
    if value is None:
        return {"null": True}
    if isinstance(value, bool):
        return {"bool": True}
    if isinstance(value, int):
        return {"integer": True}
    if isinstance(value, float):
        return {"float": True}
    if isinstance(value, str):
        return {"string": True}
    if isinstance(value, list):
        elements = {}
        for v in value:
            elements = merge(elements, shape(v))
        return {"array": elements}
    return {"object": {k: shape(v) for k, v in value.items()}}


def merge(a, b):
    """The shape of values that are sometimes of shape `a` and sometimes of shape `b`."""
    out = dict(a)
    for kind, detail in b.items():
        if kind not in out:
            out[kind] = detail
        elif kind == "array":
            out[kind] = merge(out[kind], detail)
        elif kind == "object":
            fields = dict(out[kind])
            for k, v in detail.items():
                fields[k] = merge(fields[k], v) if k in fields else v
            out[kind] = fields
    return out


def substitute(text, names):
    for k, v in names.items():
        text = text.replace("{" + k + "}", v)
    return text


def pointer(doc, path):
    for part in path.split("/")[1:]:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


class Scenario:
    def __init__(self, binary, models, scratch):
        self.binary = binary
        self.spec = json.loads((FIXTURES / "scenario.json").read_text())
        home, work = scratch / "home", scratch / "work"
        work.mkdir(parents=True)
        self.names = {
            "home": str(home),
            "work": str(work),
            "fixtures": str(FIXTURES),
            "models": str(models),
            "gguf": str(models / GGUF),
        }

    def env(self, step):
        env = dict(os.environ)
        env.pop("KEEL_MODELS_MANIFEST", None)
        env["KEEL_HOME"] = self.names["home"]
        env["KEEL_MODELS_DIR"] = self.names["models"]
        for extra in (self.spec.get("env", {}), step.get("env", {})):
            for k, v in extra.items():
                if v is None:
                    env.pop(k, None)
                else:
                    env[k] = substitute(v, self.names)
        return env

    def command(self, step):
        return [self.binary] + [substitute(a, self.names) for a in step["args"]]

    def runs(self, env):
        out = subprocess.run([self.binary, "runs", "list", "--json", "--limit", "1000"], env=env, cwd=ROOT,
                             capture_output=True, check=True)
        return len(json.loads(out.stdout))

    def interrupt(self, step):
        """Starts the step and kills it once its run is on record: the run is left interrupted."""
        env = self.env(step)
        before = self.runs(env)
        child = subprocess.Popen(self.command(step), env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while self.runs(env) == before:
            if child.poll() is not None or time.time() > deadline:
                sys.exit(f"{step['args']}: the run did not start before the process ended")
            time.sleep(0.1)
        time.sleep(0.5)
        child.send_signal(signal.SIGKILL)
        child.wait()

    def run(self, step):
        """Runs a step; returns its output (a JSON document, or the list of JSON lines)."""
        stdin = step.get("stdin")
        if "stdin_file" in step:
            stdin = Path(substitute(step["stdin_file"], self.names)).read_text()
        out = subprocess.run(self.command(step), env=self.env(step), cwd=ROOT, input=(stdin or "").encode(),
                             capture_output=True)
        expected = step.get("exit", 0)
        text = out.stdout.decode()
        if out.returncode != expected:
            sys.exit(f"{step['args']}: exit {out.returncode}, expected {expected}\n{text}\n{out.stderr.decode()}")
        try:
            if step.get("jsonl"):
                doc = [json.loads(line) for line in text.splitlines() if line.strip()]
            else:
                doc = json.loads(text)
        except json.JSONDecodeError as e:
            sys.exit(f"{step['args']}: not JSON ({e}):\n{text}\n{out.stderr.decode()}")
        for name, path in step.get("capture", {}).items():
            self.names[name] = str(pointer(doc, path))
        return doc


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binary", help="the keel binary whose JSON is the reference")
    parser.add_argument("--models", default=os.environ.get("KEEL_MODELS_DIR"), help="the fetched model files")
    parser.add_argument("--out", default=str(ROOT / "tests" / "fixtures" / "cli_json_shapes.json"))
    parser.add_argument("--label", help="what the binary was built from, recorded in the fixture")
    args = parser.parse_args()
    if not args.models:
        sys.exit("name the model files with --models or KEEL_MODELS_DIR (`keel models fetch` puts them there)")
    with tempfile.TemporaryDirectory(prefix="keel-cli-shapes-") as scratch:
        scenario = Scenario(str(Path(args.binary).resolve()), Path(args.models).resolve(), Path(scratch))
        shapes = {}
        for step in scenario.spec["steps"]:
            started = time.time()
            if step.get("interrupt"):
                scenario.interrupt(step)
                continue
            doc = scenario.run(step)
            if step.get("name"):
                if step["name"] in shapes:
                    sys.exit(f"two steps are named {step['name']!r}")
                shapes[step["name"]] = shape(doc)
            print(f"{step.get('name') or step['args']}: ok ({time.time() - started:.1f} s)", file=sys.stderr)
    version = subprocess.run([args.binary, "--version"], capture_output=True, text=True).stdout.strip()
    fixture = {
        "_doc": "Made by scripts/cli_json_shapes.py from the scenario in tests/fixtures/cli_contract/; do not edit.",
        "reference": f"{version}: {args.label}" if args.label else version,
        "shapes": shapes,
    }
    Path(args.out).write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")
    print(f"{len(shapes)} shapes written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
