"""What every generator shares: the per-process `Context`, `prepare`, the random streams, `Kind`.

Generators import this module and nothing imports generators from here, so the import graph
runs one way: kind modules -> context, and `kinds.py` (the registry) -> kind modules. A kind
module declares itself with one `KIND = Kind(...)` next to its spec class; `kinds.py` collects
those declarations.

Random streams. Every random generator is seeded by `[seed, salt_hi, salt_lo, <the kind's
stream id>, ...]`. The two salt words are a 64-bit digest of the spec's content (`content_salt`):
the fields that change the data (`SpecBase.content`: lengths, kind options, an explicit `salt`;
not the paths of corpus and tokenizer) and the sha256 of the tokenizer's `tokenizer.json` once
`prepare` has loaded it, so a dataset rebuilt elsewhere from the same files is the same.
So the 8K and the 32K sets of one seed, or the sets of two tokenizers, draw independent samples,
while the same spec and seed give the same bytes, and the fields that only say how many samples,
how they are stored or where a model runs (`SpecBase.NOT_CONTENT`) change nothing: a longer run
of a spec extends it. Sample streams come from `sample_rng(spec, index, ...)`, the streams of the
whole dataset from `dataset_rng(spec, ...)`; each kind declares its id with its `Kind` (checked
unique there), and `Stream` lists the ids of the dataset-level streams. The values are part of
the data: changing one changes every byte generated with it (tests/generators/test_golden.py
pins them).
"""

from __future__ import annotations

import enum
import hashlib
import json
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .corpus import Corpus
from .errors import ConfigError, CorpusError
from .llm import LLM, LLMStats
from .specs import SpecBase
from .tokenizer import Tokenizer, resolve_tokenizer
from .tokenstore import TokenStore

if TYPE_CHECKING:
    from .records import Record


class Stream(enum.IntEnum):
    """Ids of the random streams a dataset draws beside its samples' (third and later seed words).

    The second word of every seed is the kind's own stream id, declared with the kind (`Kind.stream`,
    1..255, checked unique below), so adding a kind touches nothing here.
    """

    # Never a sample index (specs cap num_samples far below): marks a stream that belongs to the
    # dataset rather than to one sample (the document order, SynL's themes, SynL's model steps).
    BEYOND_SAMPLES = 1 << 40
    # CIP's per-epoch document permutations (sample indices stay below 2**27).
    EPOCH = 0x45504F43


# Kind name -> its stream id, filled as each kind is declared (`Kind.__post_init__`), so that
# `sample_rng` and `doc_order` find a spec's without importing the registry (kinds.py imports us).
KIND_STREAM: dict[str, int] = {}


@dataclass(frozen=True)
class Kind:
    """The one declaration of a dataset kind, made in the kind's own module.

    `cli_flags`: extra or renamed CLI flags per spec field (`{"max_tables": ("--tables",),
    "seq_len": ("--seq-len", "-L")}`); every other field becomes `--field-name`.
    """

    name: str
    spec: type[SpecBase]
    stream: int
    needs_corpus: bool
    generate: Callable[[Context, int, int, int], list[Record]]
    cli_flags: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        declared = self.spec.model_fields["kind"].default
        if declared != self.name:
            raise ValueError(f"kind {self.name!r} declares a spec whose kind is {declared!r}")
        if not 1 <= self.stream < 256:
            raise ValueError(f"kind {self.name!r}: its stream id {self.stream} is outside 1..255")
        taken = {stream: name for name, stream in KIND_STREAM.items() if name != self.name}
        if self.stream in taken:
            raise ValueError(f"kind {self.name!r}: stream id {self.stream} is kind {taken[self.stream]!r}'s")
        KIND_STREAM[self.name] = self.stream


@dataclass
class Context:
    """What generating a dataset needs, loaded once per process and reused for every shard."""

    spec: Any  # one of the kinds' spec classes
    tokenizer: Tokenizer
    corpus: Corpus | None
    cache_dir: Path
    dataset_id: str
    memo: dict[str, Any] = field(default_factory=dict)  # per-generator caches (e.g. the CIP plan)
    llm: LLM | None = None  # injected by the caller (service/llm) when the spec's llm section asks for one
    llm_stats: LLMStats = field(default_factory=LLMStats)  # what the LLM steps sent, kept and rejected
    # Cooperative cancellation: generators call `checkpoint()` between samples and inside long
    # ones; the caller's callable raises to stop the shard (the service checks the dataset state).
    cancel_check: Callable[[], None] | None = None
    _store: TokenStore | None = None

    def checkpoint(self) -> None:
        if self.cancel_check is not None:
            self.cancel_check()

    @property
    def store(self) -> TokenStore:
        """The tokenized corpus: the cached store, else one that encodes the documents read.

        Lazy (`TokenStore.open`): a kind that reads a few documents encodes only those, and one
        that needs the whole arrays (CIP) builds and caches the full store on first use of them.
        """
        if self._store is None:
            if self.corpus is None:
                raise RuntimeError("this dataset kind has no corpus")
            self._store = TokenStore.open(self.corpus, self.tokenizer, self.cache_dir, lazy=True)
        return self._store

    def save_store(self) -> None:
        """Keep what a lazy store encoded in the cache for the next run (`TokenStore.save_encoded`)."""
        if self._store is not None:
            self._store.save_encoded()


# Per spec object (by id, dropped when the spec is collected): the sha256 of the tokenizer that
# `prepare` loaded for it, and its content salt, computed once since every draw asks for it.
_TOKENIZER_SHA: dict[int, str] = {}
_SALT: dict[int, tuple[int, int]] = {}


def _forget(key: int) -> None:
    _TOKENIZER_SHA.pop(key, None)
    _SALT.pop(key, None)


def bind_tokenizer(spec: SpecBase, sha256: str) -> None:
    """Make the tokenizer's identity part of `spec`'s content salt (`prepare` calls it).

    A spec names its tokenizer by path; the file's digest tells two tokenizers saved at one path
    apart. A spec that was never prepared salts with its content alone.
    """
    key = id(spec)
    if key not in _TOKENIZER_SHA and key not in _SALT:
        weakref.finalize(spec, _forget, key)
    _TOKENIZER_SHA[key] = sha256
    _SALT.pop(key, None)


def content_salt(spec: SpecBase) -> tuple[int, int]:
    """Two 32-bit words of sha256(canonical JSON of the spec's content and its tokenizer's sha256)."""
    key = id(spec)
    words = _SALT.get(key)
    if words is None:
        blob = {"content": spec.content(), "tokenizer": _TOKENIZER_SHA.get(key)}
        canonical = json.dumps(blob, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(canonical.encode()).digest()
        words = (int.from_bytes(digest[:4], "big"), int.from_bytes(digest[4:8], "big"))
        if key not in _TOKENIZER_SHA:
            weakref.finalize(spec, _forget, key)
        _SALT[key] = words
    return words


def sample_rng(spec: SpecBase, index: int, *extra: int) -> np.random.Generator:
    """The random generator of one sample: a function of (seed, spec content, kind, global index)."""
    return np.random.default_rng([spec.seed, *content_salt(spec), int(KIND_STREAM[spec.kind]), index, *extra])


def dataset_rng(spec: SpecBase, *words: int) -> np.random.Generator:
    """A random generator of the whole dataset (document order, CIP's epochs, SynL's themes).

    Its third word after the kind is `Stream.BEYOND_SAMPLES`, never a sample index, so it never
    meets a sample's stream.
    """
    return np.random.default_rng([*dataset_seed(spec), *words])


def dataset_seed(spec: SpecBase) -> list[int]:
    """The seed words every dataset-level stream starts with (`dataset_rng`, the model steps' seeds)."""
    return [spec.seed, *content_salt(spec), int(KIND_STREAM[spec.kind]), int(Stream.BEYOND_SAMPLES)]


def doc_order(ctx: Context) -> np.ndarray:
    """The store's non-empty documents in the dataset's seeded order, computed once per process.

    Needle haystacks and doc_qa documents walk it from a sample's random start.
    """
    key = f"{ctx.spec.kind}.order"
    order = ctx.memo.get(key)
    if order is None:
        nonempty = ctx.store.nonempty()
        if len(nonempty) == 0:
            raise CorpusError("corpus", "has no document with any text", "point it at a corpus with text")
        rng = dataset_rng(ctx.spec)
        order = ctx.memo[key] = nonempty[rng.permutation(len(nonempty))]
    return order


def prepare(
    kind: Kind,
    spec: SpecBase,
    cache_dir: str | Path,
    llm: LLM | None = None,
    roots: Sequence[Path] | None = None,
    max_doc_bytes: int | None = None,
    oversize: str = "cut",
) -> Context:
    """Open the corpus and tokenizer a spec names; raises typed errors for bad input.

    `cache_dir`: resolved by the caller (`Paths`); `roots`: the server's data roots every path
    must resolve inside (None: unrestricted, CLI).
    """
    cache = Path(cache_dir)
    needs_corpus = kind.needs_corpus or spec.tokenizer is None  # a trained BPE learns from the corpus
    corpus = (
        Corpus.open(
            spec.corpus, text_field=spec.text_field, roots=roots, max_doc_bytes=max_doc_bytes, oversize=oversize
        )
        if needs_corpus
        else None
    )
    tokenizer = resolve_tokenizer(spec.tokenizer, corpus, vocab_size=spec.vocab_size, cache_dir=cache, roots=roots)
    bind_tokenizer(spec, tokenizer.sha256)
    llm_spec = getattr(spec, "llm", None)
    if llm is None and llm_spec is not None and llm_spec.enabled:
        raise ConfigError(
            "llm",
            f"this {kind.name} spec asks for a model ({llm_spec.backend}) but none was given",
            "run it through the service (longweave serve), which connects the llm section's endpoints",
        )
    return Context(spec, tokenizer, corpus, cache, spec.dataset_id(), llm=llm)
