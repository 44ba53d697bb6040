"""RULER's tasks beyond the single needle: multi-query, variable tracking, common and frequent words.

Decision: these are `variant` values of the `niah` kind (`multiquery`, `vartrack`, `cwe`, `fwe`),
not kinds of their own. They need exactly what the needle grid already gives: the lengths x depths
grid, the exact-length fitter, the chat and plain prompt forms, the corpus or prose haystack and
the record layout. A kind of their own would repeat all of that (spec fields, CLI flags, stream id)
for four sets that RULER itself runs as one suite. The cost is that `depths` has no effect on
`cwe` and `fwe` (their whole context is the word list) and that `num_needles` means each task's
count (below).

What each task is (after RULER, Hsieh et al. 2024, `scripts/data/synthetic`):
- `multiquery`: `num_needles` needles "The special magic {noun} for {key} is: {value}." with
  distinct keys; the question asks for every key at once, in a random order, and the answer lists
  the values in the order of the question's keys. The first key asked sits at the cell's depth,
  the others at uniform depths.
- `vartrack`: two chains of `num_needles` assignments, "VAR ABCDE = 4817203" then
  "VAR FGHIJ = VAR ABCDE" and so on, each line a needle in the haystack; the question gives the
  first chain's value and the answer lists every variable of that chain, in the order assigned
  (which is the order of appearance: its lines sit at depths d + (1 - d) j / n, as multivalue's).
  The second chain, with another value, is the distractor, at sorted uniform depths.
- `cwe` (common words): the context is a numbered list of six-letter pseudo-words, one a line;
  `num_needles` common words appear `fc` times each and the other words `fr` times (RULER's 30
  and 3 once the list holds 60 x k lines; in shorter lists fc = lines / 2k, at least 2, and
  fr = fc / 10, at least 1 and always below fc). The answer is the common words, most frequent
  first, ties (all of them) in alphabetical order.
- `fwe` (frequent words): the context is coded text, five-letter random words ten to a line (two
  on each of the eight lead lines below), with Zipf counts (rank r appears about C / r^2 times,
  RULER's alpha 2); the top `num_needles` ranks have strictly falling counts, above every other
  word. The answer is those words, most frequent first.

Exact lengths for the word lists. The fitter ends a sample's text at any token, and on a rare
restart drops a few of its first lines. So a list is eight lines of words used once, then the
core (the words with the stated counts, shuffled), then endless lines of words used once, and
the core is sized to end about 2% plus 48 tokens before the estimated end: the cut falls among
the once-used words and the counts of the core are exactly as stated. The generator recounts the
final text (`check`) and stops on a mismatch, a bug rather than bad input.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError
from .needles_text import distinct_words, values, word_pairs
from .tokenizer import Tokenizer

LEAD_LINES = 8  # once-used lines before a list's core: at least the fitter's restarts (MAX_RESTARTS)
CWE_MAX_COMMON, CWE_MAX_RARE = 30, 3  # RULER's freq_cw and freq_ucw
FWE_PER_LINE = 10
FWE_LEAD_PER_LINE = 2  # short lead lines: a short context keeps room for the core
FWE_ALPHA = 2.0
VAR_LETTERS = 5

MAGIC_NEEDLE = "The special magic {noun} for {key} is: {value}."
VAR_NEEDLE = "VAR {name} = {value}"


@dataclass
class Plan:
    """Everything a sample says, fixed before the haystack is fitted around it."""

    length: int
    depth: float
    variant: str
    value_kind: str
    keys: list[str | None]
    values: list[str]
    needles: list[str]
    depths: list[float]  # requested depth of each needle
    query: str | list[str] | None
    intro: str
    question: str
    answer: str
    answer_prefix: str  # the plain prompt's last words, which the answer completes
    plain: bool = False  # the plain prompt (set once the prompt form is resolved)
    in_order: list[list[int]] = field(default_factory=list)  # groups of needles that appear in this order
    # Word-list tasks: the haystack lines for a haystack budget in tokens, and a recount of the answer.
    lines: Callable[[int, Tokenizer], Iterator[str]] | None = None
    check: Callable[[str], str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _join_keys(keys: list[str]) -> str:
    return keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + " and " + keys[-1]


# Each task takes the spec's fields it reads (not the spec: needles.py imports this module).
def multiquery(n: int, value_kind: str, length: int, depth: float, rng: np.random.Generator, noun: str) -> Plan:
    keys = word_pairs(rng, n)
    vals = values(rng, value_kind, n, set(keys))
    asked = [int(i) for i in rng.permutation(n)]
    depths = [float(d) for d in rng.random(n)]
    depths[asked[0]] = depth
    query = [keys[i] for i in asked]
    listed = _join_keys(query)
    return Plan(
        length,
        depth,
        "multiquery",
        value_kind,
        list(keys),
        vals,
        [MAGIC_NEEDLE.format(noun=noun, key=k, value=v) for k, v in zip(keys, vals)],
        depths,
        query,
        f"Special magic {noun}s are hidden in the long text below, each tied to a key. Remember them: "
        f"you will be asked for the {noun}s of several keys after the text.",
        f"What are the special magic {noun}s for {listed} mentioned in the text above? "
        f"Answer with the {noun}s in the order of the keys, separated by commas.",
        ", ".join(vals[i] for i in asked),
        f"The special magic {noun}s for {listed} mentioned in the provided text are",
    )


def _var_names(rng: np.random.Generator, n: int) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        for row in rng.integers(26, size=(n, VAR_LETTERS)):
            name = "".join(chr(65 + int(c)) for c in row)
            if name not in out and len(out) < n:
                out.append(name)
    return out


def vartrack(n: int, value_kind: str, length: int, depth: float, rng: np.random.Generator) -> Plan:
    names = _var_names(rng, 2 * n)
    value, other = values(rng, value_kind, 2, set())
    chains = (names[:n], names[n:])
    needles, assigned = [], []
    for chain, v in zip(chains, (value, other)):
        for j, name in enumerate(chain):
            rhs = v if j == 0 else f"VAR {chain[j - 1]}"
            needles.append(VAR_NEEDLE.format(name=name, value=rhs))
            assigned.append(rhs)
    depths = [depth + (1 - depth) * j / n for j in range(n)] + sorted(float(d) for d in rng.random(n))
    return Plan(
        length,
        depth,
        "vartrack",
        value_kind,
        list(names),
        assigned,
        needles,
        depths,
        value,
        "Memorize and track the chains of variable assignments hidden in the text below: "
        "you will be asked about them after the text.",
        f"Find all variables that are assigned the value {value} in the text above, directly or through "
        "other variables. List them in the order they are assigned, separated by commas.",
        ", ".join(chains[0]),
        f"According to the chains of variable assignments in the text above, {n} variables are assigned "
        f"the value {value}; they are:",
        in_order=[list(range(n)), list(range(n, 2 * n))],
    )


def top_words(counts: Counter[str], k: int) -> list[str]:
    """The k most frequent words, ties in alphabetical order; refuses a tie across the k-th place."""
    ranked = sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))
    if len(ranked) > k and ranked[k][1] >= ranked[k - 1][1]:
        raise AssertionError(f"no strict top {k}: {ranked[: k + 1]}")  # a bug, not bad input
    return [w for w, _ in ranked[:k]]


def _fit_core(
    budget: int,
    tok: Tokenizer,
    lead: list[str],
    render: Callable[[list[str]], list[str]],
    build: Callable[[int, np.random.Generator], list[str]],
    seed: list[int],
    least: int,
) -> list[str]:
    """Core words (shuffled) whose rendered lines, after the lead lines, end well before the budget."""
    target = budget - 48 - budget // 50 - tok.count("\n".join(lead) + "\n")
    n = max(target // 4, least)
    best: list[str] | None = None
    for _ in range(5):
        words = build(n, np.random.default_rng(seed))
        used = tok.count("\n".join(render(words)))
        if used <= target:
            best = words
        if abs(target - used) <= target // 100 + 8 and best is not None:
            break
        n = max(int(n * target / max(used, 1) * 0.99), least)
    if best is None:
        raise ConfigError(
            "lengths",
            f"{budget} tokens of context cannot hold a word list with the counts this task states",
            "use larger lengths or a smaller num_needles",
        )
    return best


def _cwe_counts(n: int, k: int) -> tuple[int, int]:
    fc = min(CWE_MAX_COMMON, max(2, n // (2 * k)))
    return fc, max(1, min(CWE_MAX_RARE, fc // 10))


def cwe(k: int, length: int, depth: float, rng: np.random.Generator) -> Plan:
    common = sorted(distinct_words(rng, "pseudo", k, set()))
    seed = [int(x) for x in rng.integers(2**32, size=2)]
    counts: dict[str, int] = {}

    r = np.random.default_rng([*seed, 1])
    lead = distinct_words(r, "pseudo", LEAD_LINES, set(common))

    def build(n: int, r: np.random.Generator) -> list[str]:
        fc, fr = _cwe_counts(n, k)
        rare = distinct_words(r, "pseudo", max((n - k * fc) // fr, 1), set(common) | set(lead))
        items = common * fc + rare * fr
        return [items[int(i)] for i in r.permutation(len(items))]

    def lines(budget: int, tok: Tokenizer) -> Iterator[str]:
        def render(words: list[str]) -> list[str]:
            return [f"{i}. {w}" for i, w in enumerate(words, start=LEAD_LINES + 1)]

        lead_lines = [f"{i}. {w}" for i, w in enumerate(lead, start=1)]
        core = _fit_core(budget, tok, lead_lines, render, build, seed, 2 * k + 1)
        counts.update(Counter(core).most_common(k + 1))
        used = set(core) | set(lead)
        yield from lead_lines
        yield from render(core)
        yield from _once_used(r, "pseudo", used, LEAD_LINES + len(core) + 1, 1)

    def check(hay: str) -> str:
        found = re.findall(r"^\d+\. ([a-z]+)$", hay, re.MULTILINE)
        return ", ".join(top_words(Counter(found), k))

    return Plan(
        length,
        depth,
        "cwe",
        "words",
        [],
        [],
        [],
        [],
        None,
        "Below is a numbered list of words. Some of them appear more often than others. "
        "Memorize the ones that appear most often.",
        f"What are the {k} most common words in the list above? List them from the most to the least "
        "common, ties in alphabetical order, separated by commas.",
        ", ".join(common),
        f"The {k} most common words in the list above are:",
        lines=lines,
        check=check,
        meta={"top_counts": counts},
    )


def _once_used(r: np.random.Generator, kind: str, used: set[str], start: int, per_line: int) -> Iterator[str]:
    """Endless lines of words not used before (numbered from `start` when one a line)."""
    i = start
    while True:
        batch = distinct_words(r, kind, 64 * per_line, used)
        used |= set(batch)
        for j in range(0, len(batch), per_line):
            words = batch[j : j + per_line]
            yield f"{i}. {words[0]}" if per_line == 1 else " ".join(words)
            i += 1


def fwe(k: int, length: int, depth: float, rng: np.random.Generator) -> Plan:
    top = distinct_words(rng, "coded", k, set())
    seed = [int(x) for x in rng.integers(2**32, size=2)]
    counts: dict[str, int] = {}

    r = np.random.default_rng([*seed, 1])
    lead = distinct_words(r, "coded", LEAD_LINES * FWE_LEAD_PER_LINE, set(top))

    def build(n: int, r: np.random.Generator) -> list[str]:
        scale = n / 1.6449  # sum of 1/r^2
        ranks = max(int(scale**0.5), k + 1)
        c = [max(int(scale / (j + 1) ** FWE_ALPHA), 1) for j in range(ranks)]
        for j in range(k - 1, -1, -1):  # strictly falling over the top k, above rank k+1 and 1
            c[j] = max(c[j], c[j + 1] + 1, 2)
        words = top + distinct_words(r, "coded", ranks - k, set(top) | set(lead))
        items = [w for w, m in zip(words, c) for _ in range(m)]
        items += distinct_words(r, "coded", max(n - len(items), 0), set(words) | set(lead))
        return [items[int(i)] for i in r.permutation(len(items))]

    def render(words: list[str], per_line: int = FWE_PER_LINE) -> list[str]:
        return [" ".join(words[j : j + per_line]) for j in range(0, len(words), per_line)]

    def lines(budget: int, tok: Tokenizer) -> Iterator[str]:
        core = _fit_core(budget, tok, render(lead, FWE_LEAD_PER_LINE), render, build, seed, (k + 1) * (k + 2) // 2 + 1)
        counts.update(Counter(core).most_common(k + 1))
        used = set(core) | set(lead)
        yield from render(lead, FWE_LEAD_PER_LINE)
        yield from render(core)
        yield from _once_used(r, "coded", used, 0, FWE_PER_LINE)

    def check(hay: str) -> str:
        return ", ".join(top_words(Counter(hay.split()), k))

    return Plan(
        length,
        depth,
        "fwe",
        "words",
        [],
        [],
        [],
        [],
        None,
        "Read the coded text below and track how often each coded word appears.",
        f"What are the {k} most frequent coded words in the text above? List them from the most to the "
        "least frequent, separated by commas.",
        ", ".join(top),
        f"The {k} most frequent coded words in the text above are:",
        lines=lines,
        check=check,
        meta={"top_counts": counts},
    )
