"""Long-document QA (`doc_qa`): self-instruct over a random chunk, as in Llama 2 Long.

A model that has only seen short instructions learns to use a long context when the question is
about one place in a long input. Without human long-context data, Llama 2 Long made such samples
by self-instruct: take a random chunk of a long pretraining document, have a chat model write
question-answer pairs about the chunk, have it check its own pairs against the chunk, and train
on the whole document (cut to the maximum length) plus the question, with the answer as target.
This module does that with three safeguards, because a model's output is never trusted:

1. Code checks every proposed pair before any verification call: the JSON must match the schema
   (guided decoding asks for it, pydantic checks it), the question must be one question with
   words of the chunk in it, the answer must be short enough, must not be given away by the
   question, and must be grounded in the chunk (a short answer verbatim, a long one by most of
   its content words).
2. The verification pass asks the model for a verdict AND a supporting quote; a pair is kept
   only if the verdict is yes and the quote really occurs in the chunk.
3. A sample with no verified pair tries another chunk (`attempts` in all); after that it is
   dropped and counted, never filled with something unverified. A shard may therefore hold fewer
   than `shard_size` records; the dataset's stats say how many were dropped and why.

The long document is either consecutive corpus documents joined until the length budget
(`source="documents"`; with a corpus of real long documents one document fills it) or a CIP
sequence (`source="cip"`), whose chunk-interleaved layout makes the question's evidence sit
between unrelated text. Requests are batched per shard and per round (all proposals, then all
verifications), so the backend keeps many requests in flight. Sampling seeds are a function of
(dataset seed, sample, attempt), and the service caches answers, so a shard that runs twice
produces the same records without calling the model again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from . import cip
from .context import Context, Kind, bind_tokenizer, doc_order, sample_rng
from .errors import ConfigError
from .llm import LLMRequest, LLMResponse, Sampling, ask
from .specs import MAX_SEQ_LEN, LLMSpec, SpecBase

if TYPE_CHECKING:
    from .records import Record

# This kind's random stream id: the second word of every doc_qa seed (unique among kinds, see context.Kind).
STREAM = 4


class DocQASpec(SpecBase):
    """Long-document QA (Llama 2 Long self-instruct): a model writes QA pairs about a random chunk,
    verifies them against the chunk, and the whole document plus a verified question is the prompt."""

    kind: Literal["doc_qa"] = "doc_qa"
    seq_len: StrictInt = Field(
        8192, ge=256, le=MAX_SEQ_LEN, description="Most tokens of document, question and answer."
    )
    source: Literal["documents", "cip"] = Field(
        "documents", description="documents: consecutive corpus documents joined up to seq_len; cip: a CIP sequence."
    )
    docs_per_seq: StrictInt = Field(4, ge=1, le=65_536, description="CIP source: documents interleaved per sequence.")
    chunks_per_doc: StrictInt = Field(2, ge=1, le=4096, description="CIP source: chunks per document.")
    chunk_tokens: StrictInt = Field(
        768, ge=32, le=65_536, description="Tokens of the chunk the model writes questions about."
    )
    pairs_per_chunk: StrictInt = Field(3, ge=1, le=16, description="Question-answer pairs asked for per chunk.")
    max_answer_tokens: StrictInt = Field(128, ge=1, le=4096, description="Longest answer kept (tokens).")
    attempts: StrictInt = Field(
        3, ge=1, le=16, description="Chunks tried per sample before it is dropped (and counted)."
    )
    loss_on_prompt: bool = Field(False, description="Train on the document and question too (Llama 2 Long did).")
    llm: LLMSpec = Field(
        default_factory=LLMSpec, description="The model that writes and verifies the pairs (required)."
    )

    @model_validator(mode="after")
    def _needs_model(self) -> DocQASpec:
        if not self.llm.enabled:
            raise ValueError(
                "llm: doc_qa needs a language model to write and verify its questions (fix: set "
                "llm.backend to openai with llm.endpoints and llm.model, e.g. a vLLM server)"
            )
        if self.chunk_tokens + self.max_answer_tokens + 64 > self.seq_len:
            raise ValueError(
                f"chunk_tokens: {self.chunk_tokens} plus max_answer_tokens {self.max_answer_tokens} "
                f"does not fit in seq_len {self.seq_len} (fix: lower chunk_tokens or raise seq_len)"
            )
        return self


STEP = "doc_qa"
VERIFY = "doc_qa_verify"
MAX_QUESTION_TOKENS = 96
STYLES = {
    # Llama 2 Long used two prompts: answers in full sentences, and short answers.
    "normal": "Each answer is one or two complete sentences.",
    "short": "Each answer is a short phrase of at most eight words, copied exactly from the passage.",
}
SYSTEM_QA = "You write reading-comprehension questions about a passage, in JSON."
SYSTEM_VERIFY = "You check answers against a passage strictly, in JSON."
INSTRUCTIONS = (
    "Read the document below, then answer the question that follows it.",
    "Answer the question at the end using the document.",
    "The question after this document is about one part of it. Answer it.",
)
_WORD = re.compile(r"[A-Za-z0-9_]+")


def _text(hundreds: int) -> dict[str, Any]:
    """A string of at most `hundreds` x 100 characters, without quotes, backslashes or control
    characters. Under guided decoding a model must then close every string (a free one lets a weak
    model ramble until max_tokens and the JSON is cut off) and cannot write a broken escape. The
    odd shape is what vLLM's grammar engine (xgrammar) compiles: one class repeated more than
    about 120 times makes it fail with a 500, a group of up to 100 repeated a few times does not."""
    piece = '[^"\\\\\\x00-\\x1f]{1,100}'
    return {"type": "string", "pattern": f"^{piece}({piece}){{0,{hundreds - 1}}}$"}


def qa_schema(k: int) -> dict[str, Any]:
    pair = {
        "type": "object",
        "properties": {"question": _text(3), "answer": _text(4)},
        "required": ["question", "answer"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"pairs": {"type": "array", "items": pair, "minItems": 1, "maxItems": k}},
        "required": ["pairs"],
        "additionalProperties": False,
    }


VERIFY_SCHEMA = {
    "type": "object",
    "properties": {"supported": {"type": "boolean"}, "quote": _text(4)},
    "required": ["supported", "quote"],
    "additionalProperties": False,
}


class _Pair(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    question: str = Field(min_length=1, max_length=2000)
    answer: str = Field(min_length=1, max_length=4000)


class _Pairs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pairs: list[_Pair] = Field(min_length=1, max_length=16)


class _Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    supported: bool
    quote: str = Field(max_length=4000)


def norm(text: str) -> str:
    """Lower case, single spaces, no surrounding punctuation: how texts are compared."""
    return " ".join(text.lower().split()).strip(" .,;:!?\"'()[]")


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) >= 4}


# -- documents ---------------------------------------------------------------------------------------
@dataclass
class Source:
    """One sample's long document (token ids) and the chunk the model writes about."""

    ids: np.ndarray
    docs: list[str]
    chunk: tuple[int, int]  # token offsets in `ids`
    chunk_text: str = ""
    style: str = "normal"

    # Every proposed pair and every verdict is checked against the chunk: normalise it once.
    @cached_property
    def chunk_norm(self) -> str:
        return norm(self.chunk_text)

    @cached_property
    def chunk_words(self) -> set[str]:
        return content_words(self.chunk_text)


def _joined_documents(ctx: Context, rng: np.random.Generator, budget: int) -> tuple[np.ndarray, list[str]]:
    """Consecutive documents of the seeded order, separated by a blank line, cut to `budget` tokens."""
    order, store = doc_order(ctx), ctx.store
    sep = ctx.memo.get("doc_qa.sep")
    if sep is None:
        sep = ctx.memo["doc_qa.sep"] = ctx.tokenizer.encode("\n\n")
    pos = int(rng.integers(len(order)))
    pieces: list[np.ndarray] = []
    docs: list[str] = []
    have = 0
    for step in range(len(order)):
        d = int(order[(pos + step) % len(order)])
        if pieces:
            pieces.append(sep)
            have += len(sep)
        pieces.append(np.asarray(store.doc(d)))
        docs.append(store.ids[d])
        have += len(pieces[-1])
        if have >= budget:
            break
    return np.concatenate(pieces)[:budget].astype(np.int32), docs


def _cip_sequence(ctx: Context, spec: DocQASpec, j: int, budget: int) -> tuple[np.ndarray, list[str]]:
    sub = ctx.memo.get("doc_qa.cip")
    if sub is None:
        cip_spec = cip.CIPSpec(
            num_samples=1,
            seed=spec.seed,
            corpus=spec.corpus,
            text_field=spec.text_field,
            tokenizer=spec.tokenizer,
            vocab_size=spec.vocab_size,
            seq_len=budget,
            docs_per_seq=spec.docs_per_seq,
            chunks_per_doc=spec.chunks_per_doc,
            # A small budget still admits chunks: the floor never exceeds what N x K chunks leave.
            min_chunk_tokens=max(1, min(32, budget // (spec.docs_per_seq * spec.chunks_per_doc))),
            salt=spec.salt,  # a held-out doc_qa split reads held-out sequences too
        )
        bind_tokenizer(cip_spec, ctx.tokenizer.sha256)
        sub = ctx.memo["doc_qa.cip"] = Context(
            cip_spec, ctx.tokenizer, ctx.corpus, ctx.cache_dir, ctx.dataset_id, _store=ctx.store
        )
    rec = cip.generate(sub, 0, j, j + 1)[0]
    tok = ctx.tokenizer
    ids = rec.input_ids[(tok.bos_id is not None) : len(rec.input_ids) - (tok.eos_id is not None)]
    return ids.astype(np.int32), rec.meta["docs"]


def source_for(ctx: Context, spec: DocQASpec, index: int, attempt: int, budget: int) -> Source:
    rng = sample_rng(spec, index, attempt)
    if spec.source == "cip":
        ids, docs = _cip_sequence(ctx, spec, index * spec.attempts + attempt, budget)
    else:
        ids, docs = _joined_documents(ctx, rng, budget)
    n = min(spec.chunk_tokens, len(ids))
    lo = int(rng.integers(0, len(ids) - n + 1))
    style = "short" if rng.random() < 0.5 else "normal"
    return Source(ids, docs, (lo, lo + n), ctx.tokenizer.decode(ids[lo : lo + n]).strip(), style)


# -- the two model rounds ----------------------------------------------------------------------------
def _sampling(spec: DocQASpec, index: int, attempt: int, salt: int, *, judge: bool = False) -> Sampling:
    seed = int(sample_rng(spec, index, attempt, salt).integers(2**31))
    if judge:  # the verdict should not depend on luck
        return Sampling(temperature=0.0, top_p=1.0, max_tokens=min(spec.llm.max_tokens, 256), seed=seed)
    return Sampling(temperature=spec.llm.temperature, top_p=spec.llm.top_p, max_tokens=spec.llm.max_tokens, seed=seed)


def qa_request(spec: DocQASpec, src: Source, index: int, attempt: int) -> LLMRequest:
    k = spec.pairs_per_chunk
    user = (
        f"Passage:\n{src.chunk_text}\n\nWrite {k} question-answer pair{'s' if k > 1 else ''} that can be "
        f"answered from this passage alone, each about a different detail. {STYLES[src.style]} "
        "Do not mention 'the passage' in the questions. Reply with JSON: "
        '{"pairs": [{"question": "...", "answer": "..."}]}'
    )
    return LLMRequest.chat(
        SYSTEM_QA, user, sampling=_sampling(spec, index, attempt, 0), json_schema=qa_schema(k), step=STEP
    )


def verify_request(spec: DocQASpec, src: Source, pair: _Pair, index: int, attempt: int, n: int) -> LLMRequest:
    user = (
        f"Passage:\n{src.chunk_text}\n\nQuestion: {pair.question}\nProposed answer: {pair.answer}\n\n"
        "Is the proposed answer correct and fully supported by the passage? Reply with JSON: "
        '{"supported": true or false, "quote": "the exact sentence of the passage that supports it"}'
    )
    return LLMRequest.chat(
        SYSTEM_VERIFY,
        user,
        sampling=_sampling(spec, index, attempt, 1 + n, judge=True),
        json_schema=VERIFY_SCHEMA,
        step=VERIFY,
    )


def check_pair(ctx: Context, spec: DocQASpec, src: Source, pair: _Pair) -> str | None:
    """Why code rejects a proposed pair (None: it may go to verification)."""
    q, a = pair.question, pair.answer
    if "\n" in q or not q.endswith("?") or not 3 <= len(q.split()) <= 60:
        return "question_format"
    if ctx.tokenizer.count(q) > MAX_QUESTION_TOKENS:
        return "question_too_long"
    if ctx.tokenizer.count(a) > spec.max_answer_tokens:
        return "answer_too_long"
    a_norm = norm(a)
    if len(a_norm) >= 3 and a_norm in norm(q):
        return "leaks_answer"
    if not content_words(q) & src.chunk_words:
        return "question_off_passage"
    if src.style == "short" or len(a.split()) <= 8:
        if a_norm not in src.chunk_norm:
            return "not_grounded"
    else:
        words = content_words(a)
        if not words or len(words & src.chunk_words) < 0.6 * len(words):
            return "not_grounded"
    return None


def check_verdict(src: Source, resp: LLMResponse) -> str | None:
    try:
        verdict = _Verdict.model_validate(resp.json())
    except (ValueError, ValidationError):
        return "malformed"
    if not verdict.supported:
        return "unsupported"
    if len(verdict.quote.split()) < 3 or norm(verdict.quote) not in src.chunk_norm:
        return "quote_not_in_passage"
    return None


@dataclass
class _Found:
    src: Source
    pair: _Pair
    attempt: int
    proposed: int
    verified: int
    quote: str = ""


def _round(ctx: Context, spec: DocQASpec, pending: list[int], attempt: int, budget: int) -> dict[int, _Found]:
    """One attempt for every pending sample: propose, check, verify; the first verified pair wins."""
    stats, llm = ctx.llm_stats, ctx.llm
    assert llm is not None
    sources = {i: source_for(ctx, spec, i, attempt, budget) for i in pending}
    answers = ask(llm, [qa_request(spec, sources[i], i, attempt) for i in pending], stats)
    candidates: list[tuple[int, _Pair]] = []
    proposed: dict[int, int] = {}
    for i, resp in zip(pending, answers):
        if not resp.ok:
            continue  # counted as failed by ask()
        try:
            pairs = _Pairs.model_validate(resp.json()).pairs
        except (ValueError, ValidationError):
            stats.reject(STEP, "malformed")
            continue
        proposed[i] = len(pairs)
        seen: set[str] = set()
        for pair in pairs:
            why = "duplicate" if norm(pair.question) in seen else check_pair(ctx, spec, sources[i], pair)
            seen.add(norm(pair.question))
            if why:
                stats.reject(STEP, why)
            else:
                candidates.append((i, pair))
    counts: dict[int, int] = {}
    requests = []
    for i, pair in candidates:
        requests.append(verify_request(spec, sources[i], pair, i, attempt, counts.get(i, 0)))
        counts[i] = counts.get(i, 0) + 1
    verdicts = ask(llm, requests, stats)
    found: dict[int, _Found] = {}
    verified: dict[int, int] = {}
    for (i, pair), resp in zip(candidates, verdicts):
        if not resp.ok:
            continue
        why = check_verdict(sources[i], resp)
        if why:
            stats.reject(VERIFY, why)
            continue
        stats.accept(VERIFY)
        verified[i] = verified.get(i, 0) + 1
        if i not in found:
            found[i] = _Found(sources[i], pair, attempt, proposed.get(i, 0), 0, resp.json()["quote"])
    for i, f in found.items():
        f.verified = verified[i]
    return found


# -- records -----------------------------------------------------------------------------------------
def _overhead(ctx: Context) -> int:
    """Tokens the chat template and instruction add around document, question and answer."""
    n = ctx.memo.get("doc_qa.overhead")
    if n is None:
        msgs = _messages("", "", "", 0)
        n = ctx.memo["doc_qa.overhead"] = len(ctx.tokenizer.encode_chat(msgs)[0]) + 8
    return n


def _messages(document: str, question: str, answer: str, variant: int) -> list[dict[str, str]]:
    user = f"{INSTRUCTIONS[variant]}\n\n<document>\n{document}\n</document>\n\nQuestion: {question}"
    return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


def _record(ctx: Context, spec: DocQASpec, shard: int, index: int, local: int, f: _Found) -> Record:
    from .records import Record, record_id  # pyarrow: loaded when samples are made, not when the spec is read

    tok = ctx.tokenizer
    variant = int(sample_rng(spec, index, 99).integers(len(INSTRUCTIONS)))
    ids = f.src.ids
    for _ in range(4):  # decoding and re-encoding may merge tokens differently: trim until it fits
        document = tok.decode(ids).strip()
        msgs = _messages(document, f.pair.question, f.pair.answer, variant)
        tokens, mask, (doc_at, q_at) = tok.encode_chat_marked(msgs, ["<document>", "Question: "])
        excess = len(tokens) - spec.seq_len
        if excess <= 0:
            break
        ids = ids[: max(f.src.chunk[1], len(ids) - excess - 8)]
    else:
        raise ConfigError(
            "seq_len", f"sample {index} does not fit in {spec.seq_len} tokens", "raise seq_len or lower chunk_tokens"
        )
    answer_at = int(np.argmax(mask))
    meta = {
        "source": spec.source,
        "docs": f.src.docs,
        "chunk": list(f.src.chunk),
        "style": f.src.style,
        "attempt": f.attempt,
        "pairs_proposed": f.proposed,
        "pairs_verified": f.verified,
        "quote": f.quote,
        "question": f.pair.question,
        "model": getattr(ctx.llm, "model", ""),
        "loss_on_prompt": spec.loss_on_prompt,
        "document_tokens": len(ids),
        "seed": spec.seed,
        "index": index,
        "tokens": len(tokens),
    }
    return Record(
        id=record_id(ctx.dataset_id, shard, local),
        kind="doc_qa",
        input_ids=tokens.astype(np.int32),
        loss_mask=None if spec.loss_on_prompt else mask,
        segments=[0, doc_at, q_at, answer_at],
        messages=msgs,
        answer=f.pair.answer,
        meta=meta,
    )


def generate(ctx: Context, shard: int, start: int, stop: int) -> list[Record]:
    """doc_qa records for [start, stop); samples without a verified pair are dropped and counted."""
    spec = ctx.spec
    if not isinstance(spec, DocQASpec):
        raise ConfigError("kind", f"docqa.generate got a '{spec.kind}' spec", "pass a doc_qa spec")
    if ctx.llm is None:
        raise ConfigError(
            "llm",
            "doc_qa needs a language model and none is connected",
            "set llm.backend to openai with llm.endpoints and llm.model",
        )
    budget = spec.seq_len - MAX_QUESTION_TOKENS - spec.max_answer_tokens - _overhead(ctx)
    if budget < spec.chunk_tokens:
        raise ConfigError(
            "seq_len",
            f"{spec.seq_len} leaves {budget} tokens for the document, less than chunk_tokens {spec.chunk_tokens}",
            "raise seq_len or lower chunk_tokens",
        )
    found: dict[int, _Found] = {}
    pending = list(range(start, stop))
    for attempt in range(spec.attempts):
        if not pending:
            break
        ctx.checkpoint()
        found.update(_round(ctx, spec, pending, attempt, budget))
        pending = [i for i in pending if i not in found]
    for _ in pending:
        ctx.llm_stats.reject(STEP, "dropped_sample")
    ctx.llm_stats.accepted[STEP] += len(found)
    return [_record(ctx, spec, shard, i, i - start, found[i]) for i in sorted(found)]


KIND = Kind(
    "doc_qa", DocQASpec, STREAM, needs_corpus=True, generate=generate, cli_flags={"seq_len": ("--seq-len", "-L")}
)
