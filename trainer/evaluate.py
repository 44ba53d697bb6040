"""Evaluation of a long-context model: the needle grid and perplexity by position.

- Needle grid: for each context length and depth, a haystack of held-out text with one needle
  sentence ("The magic number of <key> is <n>.") inserted at that depth, followed by the question
  ("... The magic number of <key> is"). A trial counts as found when greedy decoding reproduces
  every answer token; it is scored with one forward pass under teacher forcing (the argmax at each
  answer position must equal the answer token, which is exactly what greedy decoding would emit).
  Output: needle.json (accuracy[length][depth]) and needle.png (a heatmap with the accuracy in
  each cell). Without `--data` the haystack is the Python standard library's source (the
  generators' `stdlib` corpus) tokenized with the model's own tokenizer, so `longweave eval MODEL`
  needs nothing but the model.
- Perplexity by position: per-token loss on held-out rows of `seq_len` tokens, averaged within
  equal position buckets. A model that uses its long context has a loss that keeps falling with
  position; one that does not has a flat or rising curve past its trained window.
  Output: perplexity.json and perplexity.png (perplexity per position bucket).

Also LongRecipe's token-impact analysis: `token_impact` gives, per token, the difference of the
actual next token's unnormalised logit between an extended and a base model on the same text, and
`select_sentences` keeps the sentences holding the most impactful tokens under a token budget;
select.py applies them to a whole dataset.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from longweave.generators.errors import ConfigError

LOGIT_CHUNK = 2048  # positions per slice of the LM head: a 128K x 128K-vocab logits tensor would be 64 GB


def _hidden(model: Any, x: torch.Tensor) -> torch.Tensor:
    """The last hidden states [T, H] of one row: the model without its LM head."""
    return model.get_decoder()(input_ids=x).last_hidden_state[0]


def _logits(model: Any, hidden: torch.Tensor) -> torch.Tensor:
    """The LM head on some positions' hidden states, float32, with the final soft-capping some
    models apply (Gemma 2); the heads of Llama, Qwen and Mistral are a plain linear layer."""
    logits = model.get_output_embeddings()(hidden).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def _per_next_token(
    model: Any, ids: torch.Tensor, chunk: int, score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """score(logits, next tokens) for every position t >= 1 of one row, the LM head applied a slice
    of positions at a time, so memory grows with the row's length times the hidden size, not the
    vocabulary."""
    hidden = _hidden(model, ids)[:-1]
    nxt = ids[0, 1:]
    return torch.cat(
        [score(_logits(model, hidden[i : i + chunk]), nxt[i : i + chunk]) for i in range(0, len(nxt), chunk)]
    )


def next_token_logits(model: Any, ids: torch.Tensor, chunk: int = LOGIT_CHUNK) -> torch.Tensor:
    """S(x_t | x_<t) for t >= 1: the logit of each actual next token."""
    return _per_next_token(model, ids, chunk, lambda logits, nxt: logits.gather(-1, nxt[:, None])[:, 0])


def next_token_nll(model: Any, ids: torch.Tensor, chunk: int = LOGIT_CHUNK) -> torch.Tensor:
    """-log p(x_t | x_<t) for t >= 1, in float64."""
    return _per_next_token(
        model, ids, chunk, lambda logits, nxt: torch.nn.functional.cross_entropy(logits, nxt, reduction="none").double()
    )


KEYS = ["zebra-quartz", "amber-falcon", "violet-harbor", "copper-lantern", "silent-meadow", "orange-glacier"]


def load_model(model_dir: str | Path) -> Any:
    """A Hugging Face causal LM from a local directory, float32, in eval mode."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True, dtype=torch.float32).eval()


def _load(model_dir: str | Path) -> tuple[Any, Any]:
    from longweave.generators.tokenizer import load_tokenizer

    return load_model(model_dir), load_tokenizer(model_dir)


def haystack_tokens(paths: list[str], limit: int = 2_000_000) -> np.ndarray:
    """Held-out text as one token array: the input_ids of Parquet datasets, in file order."""
    from longweave.generators.records import read_parquet

    from .data import parquet_files, samples_from_table

    files, _ = parquet_files(paths)
    parts, total = [], 0
    for f in files:
        for s in samples_from_table(read_parquet(f)):
            parts.append(s.input_ids)
            total += len(s.input_ids)
            if total >= limit:
                return np.concatenate(parts)
    if not parts:
        raise ConfigError("--data", "no held-out text", "pass a dataset directory")
    return np.concatenate(parts)


def corpus_haystack(tok: Any, tokens: int, source: str = "stdlib") -> np.ndarray:
    """About `tokens` tokens of a corpus (default: the stdlib's source) encoded with `tok`."""
    from longweave.generators.corpus import Corpus

    parts, total = [], 0
    for doc in Corpus.open(source):
        ids = tok.encode(doc.text)
        parts.append(np.asarray(ids, dtype=np.int64))
        total += len(ids)
        if total >= tokens:
            break
    return np.concatenate(parts)


Progress = Callable[[str, int, int], None]  # (stage, done, total)


def needle_sample(tok: Any, hay: np.ndarray, length: int, depth: float, key: str, number: str, rng: Any) -> np.ndarray:
    """One needle trial of `length` tokens: filler from `hay` (from a random start drawn with
    `rng`), the needle sentence at `depth`, the question, then the answer " <number>"; the answer
    is the last `len(tok.encode(" " + number))` tokens. Training data for the needle task itself
    (a check of this metric) is made with this function too, so the two cannot drift apart."""
    needle = tok.encode(f" The magic number of {key} is {number}. ")
    question = tok.encode(f"\nWhat is the magic number of {key}? The magic number of {key} is")
    answer = tok.encode(f" {number}")
    room = length - len(needle) - len(question) - len(answer)
    if room <= 0:
        raise ConfigError(
            "--lengths",
            f"{length} tokens cannot hold the needle and question",
            "use context lengths of at least 64 tokens",
        )
    start = int(rng.integers(0, max(1, len(hay) - room)))
    filler = np.resize(hay[start : start + room], room)
    at = round(depth * room)
    return np.concatenate([filler[:at], needle, filler[at:], question, answer]).astype(np.int64)


def device_of(model: Any) -> torch.device:
    """Where the model's weights are (the inputs go there); CPU for a model without parameters."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@torch.no_grad()
def answer_hits(model: Any, ids: np.ndarray, n: int) -> np.ndarray:
    """Per answer token (the last `n` of `ids`), whether the model's argmax under teacher forcing
    is that token: one forward pass, only the positions that predict the answer (transformers'
    `logits_to_keep`)."""
    x = torch.from_numpy(np.asarray(ids, np.int64))[None].to(device_of(model))
    logits = model(input_ids=x, logits_to_keep=n + 1).logits[0, :-1]
    return logits.argmax(-1).cpu().numpy() == np.asarray(ids[-n:])


@torch.no_grad()
def needle_grid(
    model: Any,
    tok: Any,
    hay: np.ndarray,
    lengths: list[int],
    depths: list[float],
    trials: int = 2,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """accuracy[i][j]: share of trials at lengths[i], depths[j] whose answer was decoded exactly;
    token_accuracy[i][j]: share of answer tokens predicted right (a graded signal for small models);
    first_token_accuracy[i][j]: share of trials whose first answer token was predicted right. The
    first token is found by matching the question's words against the needle's; each later one is
    a copy of the token after the previous one, a skill a small model can lack while it has the
    first, so the two are reported apart."""
    rng = np.random.default_rng(seed)
    scores = np.zeros((len(lengths), len(depths), 3))  # per cell: exact, token, first-token hits
    for i, L in enumerate(lengths):
        for j, d in enumerate(depths):
            for t in range(trials):
                key = KEYS[(i + j + t) % len(KEYS)]
                number = str(int(rng.integers(10_000, 99_999)))
                ids = needle_sample(tok, hay, L, d, key, number, rng)
                right = answer_hits(model, ids, len(tok.encode(f" {number}")))
                scores[i, j] += (right.all(), right.mean(), right[0])
                if progress is not None:
                    progress("needles", (i * len(depths) + j) * trials + t + 1, len(lengths) * len(depths) * trials)
    shares = (scores / trials).round(4)
    return {
        "lengths": lengths,
        "depths": depths,
        "trials": trials,
        "accuracy": shares[..., 0].tolist(),
        "token_accuracy": shares[..., 1].tolist(),
        "first_token_accuracy": shares[..., 2].tolist(),
    }


@torch.no_grad()
def answer_accuracy(model: Any, samples: list[Any]) -> dict[str, Any]:
    """Teacher-forced accuracy on the answers of held-out SFT samples (`data.Sample`s whose loss
    mask marks the answer, as SynL records carry): `exact` is the share of samples whose every
    answer token is the argmax, `token` the share of answer tokens that are."""
    n, exact, right, total = 0, 0, 0, 0
    for s in samples:
        if s.loss_mask is None or not s.loss_mask.any():
            continue
        n += 1
        ids = np.asarray(s.input_ids, np.int64)
        last = int(np.flatnonzero(s.loss_mask)[-1]) + 1
        ids, mask = ids[:last], np.asarray(s.loss_mask[:last], bool)
        first = int(np.flatnonzero(mask)[0])
        hits = answer_hits(model, ids, last - first)[mask[first:]]
        exact += int(hits.all())
        right += int(hits.sum())
        total += len(hits)
    if n == 0:
        raise ConfigError("--data", "no held-out sample has an answer (loss mask)", "pass an SFT dataset such as SynL")
    return {"samples": n, "exact": round(exact / n, 4), "token": round(right / max(total, 1), 4)}


@torch.no_grad()
def perplexity_by_position(
    model: Any, hay: np.ndarray, seq_len: int, buckets: int = 8, max_rows: int = 8, progress: Progress | None = None
) -> dict[str, Any]:
    """Mean next-token loss per position bucket over up to `max_rows` rows of `seq_len` tokens."""
    rows = min(max_rows, (len(hay) - 1) // seq_len)
    if rows < 1:
        raise ConfigError(
            "--data", f"the held-out text has fewer than {seq_len + 1} tokens", "pass more data or a smaller --seq-len"
        )
    nll = torch.zeros(seq_len - 1, dtype=torch.float64)
    for r in range(rows):
        ids = torch.from_numpy(hay[r * seq_len : (r + 1) * seq_len].astype(np.int64))[None]
        nll += next_token_nll(model, ids.to(device_of(model))).cpu()
        if progress is not None:
            progress("perplexity", r + 1, rows)
    nll /= rows
    edges = np.linspace(0, seq_len - 1, buckets + 1).round().astype(int)
    means = [float(nll[a:b].mean()) for a, b in itertools.pairwise(edges)]
    return {
        "seq_len": seq_len,
        "rows": rows,
        "bucket_edges": edges.tolist(),
        "nll": [round(x, 5) for x in means],
        "ppl": [round(float(np.exp(x)), 3) for x in means],
        "nll_all": round(float(nll.mean()), 5),
    }


def heatmap(grid: dict[str, Any], path: Path, title: str = "needle retrieval") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = np.asarray(grid["accuracy"])
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(grid["lengths"]), 1.2 + 0.45 * len(grid["depths"])))
    im = ax.imshow(acc.T, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto", origin="upper")
    ax.set_xticks(range(len(grid["lengths"])), [str(x) for x in grid["lengths"]], rotation=45)
    ax.set_yticks(range(len(grid["depths"])), [f"{d:.0%}" for d in grid["depths"]])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth")
    ax.set_title(title)
    for (li, di), value in np.ndenumerate(acc):
        ax.text(
            li,
            di,
            f"{value:.2f}",
            ha="center",
            va="center",
            fontsize=8,
            color="white" if value < 0.25 or value > 0.85 else "black",
        )
    fig.colorbar(im, ax=ax, label="accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def perplexity_plot(ppl: dict[str, Any], path: Path, title: str = "perplexity by position") -> None:
    """Perplexity of each position bucket, plotted at the bucket's middle position."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.asarray(ppl["bucket_edges"])
    mids = (edges[:-1] + edges[1:]) / 2
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(mids, ppl["ppl"], marker="o")
    ax.set_xlabel("position (tokens)")
    ax.set_ylabel("perplexity")
    ax.set_title(f"{title} ({ppl['rows']} rows of {ppl['seq_len']} tokens)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(
    model_dir: str | Path,
    out: str | Path,
    *,
    data: list[str] | None = None,
    lengths: list[int] | None = None,
    depths: list[float] | None = None,
    trials: int = 2,
    buckets: int = 8,
    seq_len: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Both evaluations on a model directory; writes needle.json/.png and perplexity.json/.png.

    Without `data` the haystack and the perplexity rows come from the stdlib corpus, tokenized
    with the model's tokenizer."""
    model, tok = _load(model_dir)
    window = int(getattr(model.config, "max_position_embeddings", 2048))
    lengths = lengths or [int(x) for x in np.linspace(max(64, window // 8), window, 6).round()]
    depths = depths or [0.0, 0.25, 0.5, 0.75, 1.0]
    seq_len = seq_len or window
    if data:
        hay, source = haystack_tokens(data), data
    else:
        if progress is not None:
            progress("haystack", 0, 1)
        hay, source = corpus_haystack(tok, 8 * seq_len + 2 * max(lengths) + 1), ["stdlib"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid = needle_grid(model, tok, hay, lengths, depths, trials, progress=progress)
    grid["haystack"] = source
    (out / "needle.json").write_text(json.dumps(grid, indent=1))
    heatmap(grid, out / "needle.png", title=f"needle retrieval: {Path(model_dir).name}")
    ppl = perplexity_by_position(model, hay, seq_len, buckets, progress=progress)
    ppl["data"] = source
    (out / "perplexity.json").write_text(json.dumps(ppl, indent=1))
    perplexity_plot(ppl, out / "perplexity.png", title=f"perplexity by position: {Path(model_dir).name}")
    return {"needle": grid, "perplexity": ppl}


# -- LongRecipe's token-impact analysis -----------------------------------------------------------
@torch.no_grad()
def token_impact(base: Any, extended: Any, ids: np.ndarray) -> np.ndarray:
    """Per position t >= 1: S_ext(x_t | x_<t) - S_base(x_t | x_<t), unnormalised logits; [0] = 0."""
    x = torch.from_numpy(np.asarray(ids, np.int64))[None]
    return np.concatenate([[0.0], (next_token_logits(extended, x) - next_token_logits(base, x)).numpy()])


def select_sentences(starts: np.ndarray, impact: np.ndarray, budget: int, top: float = 0.2) -> np.ndarray:
    """Indices (in text order) of the sentences to keep: those with the largest share of top-`top`
    impactful tokens first, while they fit in `budget` tokens; sentences without any go last."""
    n = len(impact)
    bounds = np.append(np.asarray(starts, np.int64), n)
    cut = np.quantile(impact, 1 - top) if n else 0.0
    hot = (impact >= cut) & (impact > 0)  # only tokens the extended model predicts better
    scores = np.array([hot[a:b].sum() / max(1, b - a) for a, b in itertools.pairwise(bounds)])
    keep, used = [], 0
    for s in np.argsort(-scores, kind="stable"):
        size = int(bounds[s + 1] - bounds[s])
        if used + size <= budget:
            keep.append(int(s))
            used += size
    return np.sort(np.asarray(keep, np.int64))
