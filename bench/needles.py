"""Needle generation, whole process: `longweave generate niah` against RULER's niah generator.

Both make `--samples` single-needle samples of `--length` tokens with the same tokenizer directory
(RULER through its `hf` tokenizer type) and the same text: the stdlib corpus documents that
longweave draws its haystack from are written, joined by blank lines, as the essay JSON RULER
reads (`json/PaulGrahamEssays.json` in a scratch copy of `--ruler-dir`, RULER's `scripts/data`,
extracted from its repository with `git archive HEAD scripts/data | tar -x`). Each contender is a
fresh process timed from start to exit, imports included (from bytecode compiled before the
first round, as an installed package runs):
- longweave cold: a fresh cache folder (no token store), the tokenizer already trained;
- longweave warm: the same cache again, its token store now built;
- RULER: `synthetic/niah.py` with its niah template and answer prefix (`constants.TASKS`),
  `--tokens_to_generate 128`, essay haystack (or `--ruler-haystack noise`, its built-in filler
  sentences, which needs no NLTK sentence model).
Runs alternate between the contenders (`--repeat` rounds), so they see the same machine load;
the table gives the median of each and the ratios RULER / longweave.

`--fit-only` times instead what composing saves inside the process (imports, tokenizer and token
store loaded once, untimed): `needles.generate` for the same samples with the composed fit and
with the encoding fit (the path a tokenizer that is not joinable takes), alternating.

    .venv/bin/python bench/needles.py --ruler-dir /tmp/ruler/scripts/data
    .venv/bin/python bench/needles.py --ruler-dir /tmp/ruler/scripts/data --ruler-haystack noise
    .venv/bin/python bench/needles.py --fit-only

RULER needs `nltk`, `wonderwords`, `tenacity` and `tqdm` importable by `--python`; its essay
haystack also needs NLTK's `punkt_tab` data (`nltk.download("punkt_tab")`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from longweave.generators import needles
from longweave.generators.context import Context
from longweave.generators.corpus import Corpus
from longweave.generators.needles import NIAHSpec
from longweave.generators.tokenizer import Tokenizer, resolve_tokenizer

REPO = Path(__file__).resolve().parents[1]
ESSAY_CHARS = 2_000_000  # about as much text as RULER's Paul Graham essays (repeated when short)


def essay_json(path: Path, chars: int) -> None:
    """The stdlib corpus documents, joined by blank lines, as RULER's essay file ({"text": ...})."""
    texts: list[str] = []
    size = 0
    for text in Corpus.open("stdlib").sample_text(chars):
        texts.append(text)
        size += len(text) + 2
        if size >= chars:
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"text": "\n\n".join(texts)}))


def ruler_template(synthetic: Path) -> str:
    """RULER's niah template with its answer prefix, as its prepare.py passes it to niah.py."""
    sys.path.insert(0, str(synthetic))
    try:
        from constants import TASKS  # type: ignore[import-not-found]  # RULER's own module
    finally:
        sys.path.pop(0)
    niah = TASKS["niah"]
    return str(niah["template"] + niah["answer_prefix"])


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed


def fit_only(tok: Tokenizer, args: argparse.Namespace) -> None:
    """needles.generate for the same samples, composed and encoding, alternating; median of each."""
    corpus = Corpus.open("stdlib")
    spec = NIAHSpec(num_samples=args.samples, lengths=[args.length], tokenizer=str(tok.path))
    ctx = Context(spec, tok, corpus, args.cache_dir, spec.dataset_id())
    len(ctx.store)  # load (or build) the token store outside the timing
    times: dict[str, list[float]] = {"composed": [], "encoding": []}
    for _ in range(args.repeat):
        for name in times:
            ctx.memo.clear()
            original = needles.joinable
            if name == "encoding":
                needles.joinable = lambda t: False  # the fit a non-joinable tokenizer gets
            try:
                t = time.perf_counter()
                needles.generate(ctx, 0, 0, args.samples)
                times[name].append(time.perf_counter() - t)
            finally:
                needles.joinable = original
    med = {k: statistics.median(v) for k, v in times.items()}
    load = os.getloadavg()
    print(
        f"{args.samples} x {args.length} tokens in-process, median of {args.repeat}, load {load[0]:.2f} {load[1]:.2f}"
    )
    print("| fit | median s | runs (s) | samples/s | encoding / this |")
    print("|---|---|---|---|---|")
    for k, v in times.items():
        runs = ", ".join(f"{x:.2f}" for x in v)
        print(f"| {k} | {med[k]:.2f} | {runs} | {args.samples / med[k]:.1f} | {med['encoding'] / med[k]:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ruler-dir", type=Path, help="RULER's scripts/data folder")
    ap.add_argument("--ruler-haystack", choices=["essay", "noise"], default="essay")
    ap.add_argument("--python", default=sys.executable, help="interpreter that runs RULER")
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--length", type=int, default=32768)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cache-dir", type=Path, default=REPO / ".longweave" / "test-cache", help="trained BPE cache")
    ap.add_argument("--fit-only", action="store_true", help="in-process: composed fit against encoding fit")
    args = ap.parse_args()

    tok = resolve_tokenizer(None, Corpus.open("stdlib"), vocab_size=8192, cache_dir=args.cache_dir)
    if args.fit_only:
        fit_only(tok, args)
        return
    if args.ruler_dir is None:
        ap.error("--ruler-dir is required (RULER's scripts/data folder)")
    longweave = str(Path(sys.executable).with_name("longweave"))
    with tempfile.TemporaryDirectory(prefix="bench-needles-") as scratch:
        work = Path(scratch)
        shutil.copytree(args.ruler_dir, work / "ruler")
        synthetic = work / "ruler" / "synthetic"
        essay_json(synthetic / "json" / "PaulGrahamEssays.json", ESSAY_CHARS)
        template = ruler_template(synthetic)
        # Both run from bytecode, as an installed package does (pip compiles at install): compiled
        # once here, untimed, and never skipped by an inherited PYTHONDONTWRITEBYTECODE.
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "true"}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        packages = [str(REPO / p) for p in ("generators", "clients", "service", "trainer")]
        subprocess.run([sys.executable, "-m", "compileall", "-q", *packages, str(work / "ruler")], check=True)

        def ours(cache: Path, run: str) -> float:
            cmd = [longweave, "generate", "niah", "-o", str(work / run), "-n", str(args.samples)]
            cmd += ["-L", str(args.length), "--tokenizer", str(tok.path), "--cache-dir", str(cache)]
            return timed(cmd, env)

        def ruler(run: str) -> float:
            cmd = [args.python, str(synthetic / "niah.py"), "--save_dir", str(work / run), "--save_name", "niah"]
            cmd += ["--tokenizer_path", str(tok.path), "--tokenizer_type", "hf"]
            cmd += ["--max_seq_length", str(args.length), "--tokens_to_generate", "128"]
            cmd += ["--num_samples", str(args.samples), "--template", template]
            cmd += ["--type_haystack", args.ruler_haystack]
            return timed(cmd, env)

        times: dict[str, list[float]] = {"cold": [], "warm": [], "ruler": []}
        for r in range(args.repeat):
            cache = work / f"cache-{r}"  # fresh: no token store yet
            times["cold"].append(ours(cache, f"cold-{r}"))
            times["warm"].append(ours(cache, f"warm-{r}"))
            times["ruler"].append(ruler(f"ruler-{r}"))
            print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), file=sys.stderr)
    med = {k: statistics.median(v) for k, v in times.items()}
    load = os.getloadavg()
    print(f"{args.samples} x {args.length} tokens, median of {args.repeat}, load {load[0]:.2f} {load[1]:.2f}")
    print("| contender | median s | runs (s) | RULER / this |")
    print("|---|---|---|---|")
    names = {
        "cold": "longweave, cold cache",
        "warm": "longweave, warm cache",
        "ruler": f"RULER niah ({args.ruler_haystack})",
    }
    for k, v in times.items():
        runs = ", ".join(f"{x:.2f}" for x in v)
        print(f"| {names[k]} | {med[k]:.2f} | {runs} | {med['ruler'] / med[k]:.2f}x |")


if __name__ == "__main__":
    main()
