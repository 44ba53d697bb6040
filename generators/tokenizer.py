"""Tokenizers: any Hugging Face tokenizer from a local directory, or one trained on the corpus.

Every length in longweave is a token count under the tokenizer the dataset is made for, so the
tokenizer is loaded once and wrapped in `Tokenizer`, which offers the few operations the
generators need, all returning numpy arrays: batch encoding without special tokens (the Rust
backend's parallel `encode_batch`), exact counting, decoding, and chat encoding with a loss mask.

Without a tokenizer directory, `train_tokenizer` trains a byte-level BPE (vocab 8192 by default)
on the corpus with the `tokenizers` library and saves it as a normal Hugging Face directory with
BOS/EOS/PAD tokens and a ChatML chat template, cached under a hash of corpus and settings so the
second run loads it in milliseconds. A dataset records the tokenizer's name and the sha256 of its
`tokenizer.json`; the trainer refuses data made with another one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .corpus import Corpus
from .errors import TokenizerError
from .paths import Roots, open_regular, refuse_dotdot, regular_files, require_inside

FIELD = "tokenizer"
BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
# ChatML: the assistant turn's content is the only span that carries loss in SFT samples.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
PLAIN_ANSWER = "\nAnswer:"  # what follows each user turn in the plain (base-model) rendering


@dataclass
class Tokenizer:
    """A loaded Hugging Face fast tokenizer plus its identity (name, sha256)."""

    hf: Any  # transformers.PreTrainedTokenizerFast
    path: Path
    name: str
    sha256: str

    @property
    def bos_id(self) -> int | None:
        token_id: int | None = self.hf.bos_token_id
        return token_id

    @property
    def eos_id(self) -> int | None:
        token_id: int | None = self.hf.eos_token_id
        return token_id

    @property
    def pad_id(self) -> int | None:
        token_id: int | None = self.hf.pad_token_id
        return token_id

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    @property
    def backend(self) -> Any:
        """The Rust `tokenizers.Tokenizer` every encode and decode goes through."""
        return self.hf.backend_tokenizer

    @property
    def bos_token(self) -> str | None:
        """BOS as text (what a rendered prompt holds), or None without one."""
        return str(self.hf.bos_token) if self.bos_id is not None and self.hf.bos_token else None

    @property
    def eos_token(self) -> str | None:
        """EOS as text, or None without one."""
        return str(self.hf.eos_token) if self.eos_id is not None and self.hf.eos_token else None

    def render_chat(self, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
        """The chat as text through the tokenizer's chat template (TokenizerError without one)."""
        if not self.has_chat_template():
            raise TokenizerError(FIELD, f"'{self.name}' has no chat template", "use a tokenizer with a chat_template")
        text: str = self.hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        return text

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.backend.encode(text, add_special_tokens=False).ids, dtype=np.int32)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        encs = self.backend.encode_batch(texts, add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int32) for e in encs]

    def count(self, text: str) -> int:
        return len(self.backend.encode(text, add_special_tokens=False).ids)

    def count_batch(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self.backend.encode_batch(texts, add_special_tokens=False)]

    def token_texts(self) -> list[str]:
        """The text of every token id decoded on its own, in one batch call of the Rust backend.

        CIP reads it once per tokenizer to know which ids end a line or a sentence, so that it
        finds natural cut points by looking ids up instead of decoding corpus tokens.
        """
        texts: list[str] = self.backend.decode_batch([[i] for i in range(self.vocab_size)], skip_special_tokens=False)
        return texts

    def decode(self, ids: np.ndarray | list[int], skip_special_tokens: bool = False) -> str:
        text: str = self.hf.decode(list(map(int, ids)), skip_special_tokens=skip_special_tokens)
        return text

    def encode_chat(self, messages: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of a chat and a mask that is true on the last (assistant) message only.

        The prompt is rendered with the generation prompt and must be a text prefix of the whole
        chat; the mask covers what follows it. This holds for any chat template, without relying
        on `{% generation %}` markers that few templates carry.
        """
        ids, mask, _ = self.encode_chat_marked(messages, [])
        return ids, mask

    def encode_chat_marked(
        self, messages: list[dict[str, str]], marks: list[str]
    ) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """`encode_chat`, plus the index of the token where each string of `marks` begins.

        The chat may hold several turns (system, user, assistant, user, assistant, ...): the mask
        is true on every assistant message (with its end of turn). Each prompt part (the chat up to
        an assistant turn, rendered with the generation prompt) must be a text prefix of the chat
        that follows, which holds for any ordinary template, without `{% generation %}` markers.

        Each mark is searched in the rendered prompt parts after the previous one, so a caller
        names the start of every piece (a table's title, the question) and gets exact token offsets
        from the tokenizer's own character offsets in the same encoding that yields the ids,
        instead of re-encoding prefixes.
        """
        return self.encode_turns(messages, marks, "chat")

    def has_chat_template(self) -> bool:
        return bool(getattr(self.hf, "chat_template", None))

    def _chat_parts(self, messages: list[dict[str, str]]) -> list[tuple[str, bool]]:
        """(text, is an answer) pieces of a chat rendered by the tokenizer's template."""
        parts: list[tuple[str, bool]] = []
        done = ""
        for i, m in enumerate(messages):
            if m.get("role") != "assistant":
                continue
            prompt = self.render_chat(messages[:i], add_generation_prompt=True)
            full = self.render_chat(messages[: i + 1])
            if not (prompt.startswith(done) and full.startswith(prompt)):
                raise TokenizerError(
                    FIELD,
                    "the chat template renders the prompt differently inside the full chat",
                    "use a template whose prompt is a prefix of the full chat",
                )
            parts += [(prompt[len(done) :], False), (full[len(prompt) :], True)]
            done = full
        return parts

    def _plain_parts(self, messages: list[dict[str, str]]) -> list[tuple[str, bool]]:
        """(text, is an answer) pieces of a chat as plain text for a base model: the system text,
        a blank line, then each user turn followed by "\nAnswer:" and the answer (" " + text), turns
        separated by a blank line; the last answer ends with EOS when the tokenizer has one."""
        parts: list[tuple[str, bool]] = []
        head = ""
        eos = self.eos_token or ""
        last = max(i for i, m in enumerate(messages) if m.get("role") == "assistant")
        for i, m in enumerate(messages):
            role, text = m.get("role"), m["content"]
            if role == "system":
                head += text + "\n\n"
            elif role == "user":
                head += text + PLAIN_ANSWER
            else:
                parts += [(head, False), (" " + text + (eos if i == last else "\n\n"), True)]
                head = ""
        return parts

    def encode_turns(
        self,
        messages: list[dict[str, str]],
        marks: list[str],
        prompt: str = "chat",
        encode: Callable[[list[str]], Sequence[Any]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """Ids, loss mask (true on every assistant turn) and mark offsets of a conversation, rendered
        with the chat template (`prompt="chat"`) or as plain text for a base model (`"plain"`,
        see `_plain_parts`). Both renderings are one function so every generator can offer both.

        `encode` turns the rendered parts into encodings (objects with `ids` and `char_to_token`,
        like the backend's); by default the backend's `encode_batch`. A generator that assembles
        the ids of a part from pre-tokenized pieces passes its own and keeps masks and marks."""
        if not messages or messages[-1].get("role") != "assistant":
            raise TokenizerError("messages", "the last message must be the assistant's answer", "end the chat with it")
        parts = self._chat_parts(messages) if prompt == "chat" else self._plain_parts(messages)
        # Special tokens in the rendered text (BOS, <|im_start|>) are parsed by the backend.
        texts = [t for t, _ in parts]
        encs = encode(texts) if encode is not None else self.backend.encode_batch(texts, add_special_tokens=False)
        pieces = [np.asarray(e.ids, dtype=np.int32) for e in encs]
        offsets = np.cumsum([0] + [len(p) for p in pieces])
        starts: list[int] = []
        k, pos = 0, 0  # the part searched and the character in it after the previous mark
        for mark in marks:
            while k < len(parts) and (parts[k][1] or parts[k][0].find(mark, pos) < 0):
                k, pos = k + 1, 0
            if k == len(parts):
                raise ValueError(f"mark {mark!r} does not occur in the rendered prompt (after the previous mark)")
            text, enc = parts[k][0], encs[k]
            at = text.find(mark, pos)
            tok = None
            # A character that no token covers (whitespace some tokenizers trim): take the next one.
            for ch in range(at, len(text)):
                tok = enc.char_to_token(ch)
                if tok is not None:
                    break
            starts.append(int(offsets[k + 1]) if tok is None else int(offsets[k]) + int(tok))
            pos = at + len(mark)
        ids = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
        mask = np.concatenate([np.full(len(p), a, dtype=bool) for p, (_, a) in zip(pieces, parts)])
        return ids, mask, starts

    @property
    def chat_template_sha256(self) -> str | None:
        """sha256 of the chat template (tokenizer_config.json, outside tokenizer.json's digest); None without one."""
        template = getattr(self.hf, "chat_template", None)
        if not template:
            return None
        text = template if isinstance(template, str) else json.dumps(template, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "chat_template_sha256": self.chat_template_sha256,
            "vocab_size": self.vocab_size,
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
            "pad_id": self.pad_id,
        }


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_tokenizer(path: str | Path, roots: Roots = None, field: str = FIELD) -> Tokenizer:
    """Load a fast tokenizer from a local directory (never from a hub).

    With `roots` (the server's data roots) the directory must resolve inside one, and only its
    regular files are read: they are copied into a private temporary directory (links are never
    followed) and loaded from there, so a link to a file outside cannot be read through it.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if roots is not None:
        refuse_dotdot(str(path), field)
        real = require_inside(path, roots, field)
        tmp = Path(tempfile.mkdtemp(prefix="longweave-tok-"))
        try:
            for rel, f in regular_files(real):
                fd = open_regular(f, roots, field)
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                with os.fdopen(fd, "rb") as src, open(tmp / rel, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            tok = load_tokenizer(tmp, None, field)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if tok.name == tmp.name:
            tok.name = real.name
        weakref.finalize(tok, shutil.rmtree, tmp, True)  # the private copy lives as long as the tokenizer
        return tok
    p = Path(path).expanduser()
    if not p.is_dir():
        raise TokenizerError(
            field,
            f"'{path}' is not a directory",
            "pass a local Hugging Face tokenizer directory, or leave tokenizer unset to train one",
        )
    if not (p / "tokenizer.json").is_file():
        raise TokenizerError(
            field,
            f"'{path}' has no tokenizer.json",
            "save the tokenizer with save_pretrained() (a fast tokenizer) into that directory",
        )
    try:
        hf = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    except Exception as exc:
        raise TokenizerError(
            field,
            f"'{path}' could not be loaded ({str(exc).splitlines()[0][:160]})",
            "check tokenizer.json and tokenizer_config.json in that directory",
        ) from None
    if not isinstance(hf, PreTrainedTokenizerFast):
        raise TokenizerError(field, f"'{path}' is not a fast tokenizer", "convert it to a tokenizer.json first")
    cfg = {}
    if (p / "tokenizer_config.json").is_file():
        cfg = json.loads((p / "tokenizer_config.json").read_text())
    name = cfg.get("longweave_name") or cfg.get("name_or_path") or p.name
    return Tokenizer(hf, p, str(name), file_sha256(p / "tokenizer.json"))


def train_tokenizer(
    corpus: Corpus,
    vocab_size: int = 8192,
    max_chars: int = 20_000_000,
    *,
    cache_dir: str | Path,
) -> Path:
    """Train (or find in the cache) a byte-level BPE on the corpus; returns its directory."""
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 300:
        raise TokenizerError(
            "vocab_size",
            f"{vocab_size} is too small for byte-level BPE",
            "use at least 300 (256 bytes plus merges and special tokens)",
        )
    cache = Path(cache_dir)
    key = hashlib.sha256(json.dumps(["bpe-v1", corpus.fingerprint(), vocab_size, max_chars]).encode()).hexdigest()[:16]
    out = cache / "tokenizers" / f"bpe{vocab_size}-{key}"
    if (out / "tokenizer.json").is_file():
        return out

    raw = RawTokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(corpus.sample_text(max_chars), trainer=trainer)
    hf = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # transformers leaves its __init__ unannotated
        tokenizer_object=raw,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[IM_START, IM_END],
        chat_template=CHATML_TEMPLATE,
    )
    # Write to a temporary sibling and rename, so a crash never leaves half a tokenizer behind.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".tmp-"))
    hf.save_pretrained(str(tmp))
    cfg_path = tmp / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["longweave_name"] = f"longweave-bpe{vocab_size}-{corpus.source if corpus.source == 'stdlib' else key}"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    try:
        tmp.rename(out)
    except OSError:  # another process won the race; its copy is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def resolve_tokenizer(
    path: str | Path | None,
    corpus: Corpus | None = None,
    vocab_size: int = 8192,
    cache_dir: str | Path | None = None,
    roots: Roots = None,
) -> Tokenizer:
    """The tokenizer at `path` (inside `roots` when given), or one trained on `corpus`."""
    if path:
        return load_tokenizer(path, roots)
    if corpus is None:
        raise TokenizerError(
            FIELD, "no tokenizer and no corpus to train one on", "set tokenizer to a directory or corpus to a source"
        )
    if cache_dir is None:
        raise ValueError("training a tokenizer needs a cache_dir (the caller's Paths.cache_dir)")
    return load_tokenizer(train_tokenizer(corpus, vocab_size=vocab_size, cache_dir=cache_dir))
