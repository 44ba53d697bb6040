"""The `longweave` CLI as a user runs it: a real subprocess, exit codes, files on disk."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest


def longweave(*args: str | Path, cache_dir: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "longweave.clients.cli", *map(str, args)]
    if args and args[0] == "generate":
        cmd += ["--cache-dir", str(cache_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def parquet_bytes(folder: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((folder / "data").glob("*.parquet"))]


CIP = ("generate", "cip", "--seq-len", "512", "--num-samples", "6", "--shard-size", "4")


def test_generate_is_byte_identical_per_seed(tmp_path: Path, cache_dir: Path) -> None:
    runs = {}
    for name, seed, jobs in (("a", "1", "1"), ("b", "1", "2"), ("c", "2", "1")):
        res = longweave(*CIP, "--seed", seed, "--jobs", jobs, "--out", tmp_path / name, cache_dir=cache_dir)
        assert res.returncode == 0, res.stderr
        runs[name] = parquet_bytes(tmp_path / name)
    assert len(runs["a"]) == 2  # 6 samples in shards of 4
    assert runs["a"] == runs["b"]  # two worker processes write what one process writes
    assert runs["a"] != runs["c"]
    info = json.loads((tmp_path / "a" / "dataset.json").read_text())
    assert info["num_samples"] == 6 and info["num_tokens"] == 6 * 512
    assert (tmp_path / "a" / "README.md").read_text().count("512") >= 1
    svg = ET.fromstring((tmp_path / "a" / "lengths.svg").read_text())  # well-formed, with bars and labels
    assert svg.tag.endswith("svg") and len([e for e in svg if e.tag.endswith("rect")]) >= 2
    assert (tmp_path / "a" / "tokenizer" / "tokenizer.json").is_file()
    assert "done:" in res.stdout and str(tmp_path / "c") in res.stdout.replace("\n", "")


def test_inspect_shows_a_decoded_sample(tmp_path: Path, cache_dir: Path) -> None:
    assert longweave(*CIP, "--out", tmp_path / "d", cache_dir=cache_dir).returncode == 0
    res = longweave("inspect", tmp_path / "d", cache_dir=cache_dir)
    assert res.returncode == 0, res.stderr
    assert "num_tokens" in res.stdout and "/00000/000000" in res.stdout


def first_record(folder: Path) -> dict:
    import pyarrow.parquet as pq

    row = pq.read_table(sorted((folder / "data").glob("*.parquet"))[0]).slice(0, 1).to_pylist()[0]
    return {**row, "meta": json.loads(row["meta"]), "messages": json.loads(row["messages"] or "null")}


def test_inspect_marks_the_chunk_boundaries_of_a_cip_sample(tmp_path: Path, cache_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per chunk marker
    assert longweave(*CIP, "--chunks-per-doc", "2", "--out", tmp_path / "d", cache_dir=cache_dir).returncode == 0
    res = longweave("inspect", tmp_path / "d", "--chars", "100000", cache_dir=cache_dir)
    assert res.returncode == 0, res.stderr
    rec = first_record(tmp_path / "d")
    chunks = rec["meta"]["chunks"]
    markers = [line for line in res.stdout.splitlines() if line.startswith("--- chunk ")]
    assert len(chunks) >= 4 and len(markers) == len(chunks)
    for k, ((doc, start, end, at), line) in enumerate(zip(chunks, markers, strict=True)):
        assert line.startswith(
            f"--- chunk {k + 1}/{len(chunks)}: doc {rec['meta']['docs'][doc]}, tokens {start}-{end} (at {at})"
        ), line


@pytest.mark.parametrize("position", ["before", "after", "both"])
def test_inspect_shows_the_questions_and_answers_of_a_synl_sample(
    position: str, tmp_path: Path, cache_dir: Path, monkeypatch
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")
    res = longweave(
        "generate", "synl", "--seq-len", "1024", "--num-samples", "1", "--question-position", position,
        "--questions-per-sample", "2", "--out", tmp_path / "s", cache_dir=cache_dir,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    res = longweave("inspect", tmp_path / "s", "--chars", "200", cache_dir=cache_dir)
    assert res.returncode == 0, res.stderr
    rec = first_record(tmp_path / "s")
    first, later = rec["messages"][1]["content"], rec["messages"][3]["content"]
    # The question is the paragraph after "Question: ": before the tables, after them, or both.
    tail = first.rpartition("Question: ")[2] if position == "after" else first.partition("Question: ")[2]
    question = tail.split("\n\n")[0].strip()
    assert question and question not in res.stdout.split("question:")[0]  # past the 200 characters shown
    assert f"question: {question}" in res.stdout
    assert f"answer: {rec['answer']}" in res.stdout
    assert f"question 2: {later.removeprefix('Question: ').strip()}" in res.stdout
    assert f"answer 2: {rec['messages'][4]['content']}" in res.stdout


def bad_corpora(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("")
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{oops\n')
    (tmp_path / "bad.parquet").write_text("not parquet at all")
    return {"empty": tmp_path / "empty", "jsonl": tmp_path / "bad.jsonl", "parquet": tmp_path / "bad.parquet"}


@pytest.mark.parametrize(
    "case, option",
    [
        ("missing corpus", "--corpus"),
        ("empty corpus", "--corpus"),
        ("invalid jsonl", "--corpus"),
        ("invalid parquet", "--corpus"),
        ("L < N*K", "--seq-len"),
        ("unknown format", "--formats"),
        ("unknown family", "--families"),
        ("missing tokenizer", "--tokenizer"),
        ("bad depth", "--depths"),
        ("bad length", "--lengths"),
        ("one table for multihop", "--tables"),
        ("unknown cut", "--cut"),
        ("chunk floor above L/(N*K)", "--min-chunk-tokens"),
        ("doc share above 1", "--max-doc-share"),
        ("docs_per_seq_max below N", "--docs-per-seq-max"),
        ("unanswerable rate of 1", "--unanswerable-rate"),
        ("unknown header style", "--labels"),
        ("no processes", "--jobs"),
    ],
)
def test_bad_input_is_one_line_exit_2(case: str, option: str, tmp_path: Path, cache_dir: Path) -> None:
    corpora = bad_corpora(tmp_path)
    out = ("--out", tmp_path / "out")
    args = {
        "missing corpus": ("generate", "cip", "--corpus", tmp_path / "nope.jsonl", *out),
        "empty corpus": ("generate", "cip", "--corpus", corpora["empty"], *out),
        "invalid jsonl": ("generate", "cip", "--corpus", corpora["jsonl"], *out),
        "invalid parquet": ("generate", "cip", "--corpus", corpora["parquet"], *out),
        "L < N*K": ("generate", "cip", "--seq-len", "40", "--docs-per-seq", "8", "--chunks-per-doc", "8", *out),
        "unknown format": ("generate", "synl", "--format", "markdown,xml", *out),
        "unknown family": ("generate", "synl", "--families", "poetry", *out),
        "missing tokenizer": ("generate", "cip", "--tokenizer", tmp_path / "no-such-dir", *out),
        "bad depth": ("generate", "niah", "--depths", "0,1.5", *out),
        "bad length": ("generate", "niah", "--lengths", "1024,many", *out),
        "one table for multihop": ("generate", "synl", "--tables", "1", "--families", "multihop", *out),
        "unknown cut": ("generate", "cip", "--cut", "bogus", *out),
        "chunk floor above L/(N*K)": ("generate", "cip", "-L", "1024", "-N", "8", "--min-chunk-tokens", "100", *out),
        "doc share above 1": ("generate", "cip", "--max-doc-share", "1.5", *out),
        "docs_per_seq_max below N": ("generate", "cip", "-N", "4", "--docs-per-seq-max", "2", *out),
        "unanswerable rate of 1": ("generate", "synl", "--unanswerable-rate", "1", *out),
        "unknown header style": ("generate", "synl", "--labels", "title-case", *out),
        "no processes": ("generate", "synl", "--jobs", "0", *out),
    }[case]
    res = longweave(*args, cache_dir=cache_dir)
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in res.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert option in lines[0] and "fix:" in lines[0], lines[0]


def test_a_status_waiting_for_a_run_says_so() -> None:
    from longweave.clients.cli import waiting_text
    from longweave.clients.sdk import Dataset

    ds = Dataset.model_validate(
        {"id": "x", "kind": "cip", "state": "running", "waiting_for": {"group": "run:slow", "lag": 5, "since": 1.0}}
    )
    assert ds.waiting_for == {"group": "run:slow", "lag": 5, "since": 1.0}
    assert waiting_text(ds) == "waiting for run:slow (5 unread entries)"
    assert waiting_text(Dataset.model_validate({"id": "x", "kind": "cip", "state": "done"})) == ""


# Every flag `longweave generate` has had, with a value and the spec field it must set. The
# commands are built from the spec fields, so this pins the names users' scripts rely on.
FLAGS = {
    "cip": [
        ("--corpus", "stdlib", "corpus", "stdlib"),
        ("--seq-len", "512", "seq_len", 512),
        ("-L", "600", "seq_len", 600),
        ("--docs-per-seq", "3", "docs_per_seq", 3),
        ("-N", "5", "docs_per_seq", 5),
        ("--chunks-per-doc", "3", "chunks_per_doc", 3),
        ("-K", "4", "chunks_per_doc", 4),
        ("--split", "equal", "split", "equal"),
        ("--min-doc-tokens", "5", "min_doc_tokens", 5),
        ("--max-doc-tokens", "900", "max_doc_tokens", 900),
        ("--doc-policy", "prefix", "doc_policy", "prefix"),
        ("--cut", "sentence", "cut", "sentence"),
        ("--cut-window", "16", "cut_window", 16),
        ("--min-chunk-tokens", "8", "min_chunk_tokens", 8),
        ("--docs-per-seq-max", "6", "docs_per_seq_max", 6),
        ("--max-doc-share", "0.75", "max_doc_share", 0.75),
        ("--grouping", "similar", "grouping", "similar"),
        ("--num-samples", "7", "num_samples", 7),
        ("-n", "8", "num_samples", 8),
        ("--seed", "3", "seed", 3),
        ("--shard-size", "2", "shard_size", 2),
        ("--tokenizer", "tok", "tokenizer", "tok"),
        ("--vocab-size", "512", "vocab_size", 512),
        ("--text-field", "body", "text_field", "body"),
        ("--name", "x1", "name", "x1"),
        ("--salt", "eval", "salt", "eval"),
    ],
    "synl": [
        ("--seq-len", "2048", "seq_len", 2048),
        ("-L", "4096", "seq_len", 4096),
        ("--format", "csv,html", "formats", ["csv", "html"]),
        ("--formats", "jsonl", "formats", ["jsonl"]),
        ("--families", "retrieval,reasoning", "families", ["retrieval", "reasoning"]),
        ("--tables", "2", "max_tables", 2),
        ("--max-hops", "2", "max_hops", 2),
        ("--min-columns", "6", "min_columns", 6),
        ("--max-columns", "9", "max_columns", 9),
        ("--min-len-ratio", "0.7", "min_len_ratio", 0.7),
        ("--depths", "0,0.5,1", "depths", [0.0, 0.5, 1.0]),
        ("--question-position", "before,both", "question_position", ["before", "both"]),
        ("--questions-per-sample", "3", "questions_per_sample", 3),
        ("--loss-on-prompt", None, "loss_on_prompt", True),
        ("--prompt", "plain", "prompt", "plain"),
        ("-n", "9", "num_samples", 9),
        ("--corpus", "stdlib", "corpus", "stdlib"),
        ("--vocab-size", "600", "vocab_size", 600),
        ("--llm-endpoint", "http://a:1/v1,http://b:2/v1", "llm.endpoints", ["http://a:1/v1", "http://b:2/v1"]),
        ("--llm-model", "m", "llm.model", "m"),
        ("--llm-steps", "themes,reasoning", "llm.steps", ["themes", "reasoning"]),
        ("--llm-concurrency", "5", "llm.concurrency", 5),
        ("--values", "symbolic", "values", "symbolic"),
        ("--labels", "natural", "labels", "natural"),
        ("--labels", "identifier", "labels", "identifier"),
        ("--max-agg-rows", "12", "max_agg_rows", 12),
        ("--distractors", None, "distractors", True),
        ("--unanswerable-rate", "0.25", "unanswerable_rate", 0.25),
    ],
    "doc-qa": [
        ("--seq-len", "4096", "seq_len", 4096),
        ("-L", "2048", "seq_len", 2048),
        ("--source", "cip", "source", "cip"),
        ("--chunk-tokens", "300", "chunk_tokens", 300),
        ("--pairs-per-chunk", "2", "pairs_per_chunk", 2),
        ("--attempts", "5", "attempts", 5),
        ("--loss-on-prompt", None, "loss_on_prompt", True),
        ("-n", "4", "num_samples", 4),
        ("--text-field", "body", "text_field", "body"),
        ("--llm-concurrency", "3", "llm.concurrency", 3),
    ],
    "niah": [
        ("--lengths", "512,1024", "lengths", [512, 1024]),
        ("--seq-len", "2048", "lengths", [2048]),
        ("-L", "4096", "lengths", [4096]),
        ("--depths", "0,0.5", "depths", [0.0, 0.5]),
        ("--variant", "multikey", "variant", "multikey"),
        ("--num-needles", "3", "num_needles", 3),
        ("--value-kind", "uuids", "value_kind", "uuids"),
        ("--variant", "vartrack", "variant", "vartrack"),
        ("--variant", "cwe", "variant", "cwe"),
        ("--prompt", "plain", "prompt", "plain"),
        ("--prompt", "chat", "prompt", "chat"),
        ("--haystack", "prose", "haystack", "prose"),
        ("--num-samples", "6", "num_samples", 6),
        ("-n", "5", "num_samples", 5),
        ("--salt", "held-out", "salt", "held-out"),
    ],
}
LLM_ARGS = ("--llm-endpoint", "http://h:1/v1", "--llm-model", "m")


@pytest.mark.parametrize(
    "kind, flag, value, field, expect", [(k, *case) for k, cases in FLAGS.items() for case in cases]
)
def test_every_generate_flag_sets_its_spec_field(
    kind: str, flag: str, value: str | None, field: str, expect: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from longweave.clients import cli
    from longweave.generators.kinds import parse_spec

    seen = {}
    monkeypatch.setattr(
        cli,
        "run_generate",
        lambda kind, fields, out, cache_dir, jobs: seen.update(spec=parse_spec(fields), out=out, cache_dir=cache_dir),
    )
    # doc_qa refuses a spec without a model, and an llm section needs both (the flag under test comes last and wins).
    extra = LLM_ARGS if kind == "doc-qa" or flag.startswith("--llm") else ()
    args = [
        "generate",
        kind,
        *extra,
        flag,
        *([] if value is None else [value]),
        "-o",
        str(tmp_path / "o"),
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    res = CliRunner().invoke(cli.app, args)
    assert res.exit_code == 0, res.output
    got = seen["spec"]
    for part in field.split("."):
        got = getattr(got, part)
    assert got == expect
    assert seen["out"] == tmp_path / "o" and seen["cache_dir"] == tmp_path / "c"


def test_generate_defaults_come_from_the_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from longweave.clients import cli
    from longweave.generators.kinds import KINDS, parse_spec

    for name, kind in KINDS.items():
        seen: dict[str, object] = {}

        def record(kind: object, fields: dict, out: Path, cache_dir: Path | None, jobs: int, seen: dict = seen) -> None:
            seen["spec"], seen["jobs"] = parse_spec(fields), jobs

        monkeypatch.setattr(cli, "run_generate", record)
        extra = LLM_ARGS if "llm" in kind.spec.model_fields else ()
        res = CliRunner().invoke(cli.app, ["generate", name.replace("_", "-"), *extra, "-o", str(tmp_path)])
        assert res.exit_code == 0, res.output
        assert seen["spec"] == parse_spec({"kind": name, **({"llm": seen["spec"].llm.model_dump()} if extra else {})})
        assert seen["jobs"] == 1  # one process unless --jobs says otherwise


# -- start-up: what a command imports ------------------------------------------------------------
# Runs the CLI like `longweave ARGS` and reports, at exit, which of these top-level packages it imported.
PROBED = ("torch", "transformers", "polars", "pyarrow", "jinja2")
PROBE = (
    "import atexit, json, sys\n"
    "def report():\n"
    "    loaded = {m.split('.')[0] for m in sys.modules} | {m for m in sys.modules if m.startswith('longweave.')}\n"
    "    print('LOADED ' + json.dumps(sorted(loaded)), file=sys.stderr)\n"
    "atexit.register(report)\n"
    "sys.argv = ['longweave', *sys.argv[1:]]\n"
    "from longweave.clients.cli import main\n"
    "main()\n"
)


def loaded_by(*args: str | Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    res = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True, text=True, timeout=300)
    line = [ln for ln in res.stderr.splitlines() if ln.startswith("LOADED ")]
    assert len(line) == 1, res.stderr
    return res, set(json.loads(line[0].removeprefix("LOADED ")))


def test_the_probe_sees_what_a_command_imports(tmp_path: Path, cache_dir: Path) -> None:
    # `inspect` decodes with the dataset's tokenizer and reads Parquet: pyarrow must show up.
    assert longweave(*CIP, "--out", tmp_path / "d", cache_dir=cache_dir).returncode == 0
    res, loaded = loaded_by("inspect", tmp_path / "d")
    assert res.returncode == 0, res.stderr
    assert {"pyarrow", "longweave.generators.records", "longweave.generators.tokenizer"} <= loaded


@pytest.mark.parametrize(
    "args",
    [(), ("--help",), ("generate", "--help"), *[("generate", k, "--help") for k in ("cip", "synl", "niah", "doc-qa")]],
)
def test_help_loads_neither_torch_nor_transformers(args: tuple[str, ...]) -> None:
    res, loaded = loaded_by(*args)
    assert res.returncode in (0, 2), res.stderr  # no arguments: the usage, exit 2
    assert "Usage" in res.stdout + res.stderr
    assert not loaded & {"torch", "transformers"}, sorted(loaded & {"torch", "transformers"})
    if len(args) <= 1:  # the top-level help builds no generate command: no generator module loads
        assert not {m for m in loaded if m.startswith("longweave.generators.")} - {
            "longweave.generators",
            "longweave.generators.errors",
            "longweave.generators.kind_modules",
        }, sorted(loaded)
    if args[1:2] == ("cip",) or args[:1] == ("--help",):
        assert not loaded & {"polars", "pyarrow", "jinja2"}, sorted(loaded & set(PROBED))
    if args[1:2] == ("cip",):
        assert "longweave.generators.cip" in loaded and "longweave.generators.synl" not in loaded


@pytest.mark.parametrize("option", ["--corpus", "--tokenizer"])
def test_a_missing_input_is_refused_before_the_heavy_libraries_load(option: str, tmp_path: Path) -> None:
    res, loaded = loaded_by("generate", "cip", option, tmp_path / "nope", "--out", tmp_path / "out")
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("LOADED ")]
    assert len(lines) == 1 and lines[0].startswith(f"error: {option}: ") and "fix:" in lines[0], res.stderr
    assert not loaded & set(PROBED), sorted(loaded & set(PROBED))
    assert not (tmp_path / "out").exists()


def test_generating_loads_neither_torch_nor_transformers(tmp_path: Path, cache_dir: Path) -> None:
    # SynL renders every sample through the tokenizer's chat template (jinja2, not transformers).
    for args in (CIP, ("generate", "synl", "--seq-len", "1024", "--num-samples", "2")):
        res, loaded = loaded_by(*args, "--out", tmp_path / args[1], "--cache-dir", cache_dir)
        assert res.returncode == 0, res.stderr
        assert "done:" in res.stdout
        assert not loaded & {"torch", "transformers"}, sorted(loaded & {"torch", "transformers"})
        # pyarrow's `pa.array` would import pandas, a card drawn by matplotlib that: a second each.
        assert not loaded & {"pandas", "matplotlib"}, sorted(loaded & {"pandas", "matplotlib"})
        assert {"pyarrow", "longweave.generators.dataset"} <= loaded
    assert "jinja2" in loaded  # the synl run rendered chats
