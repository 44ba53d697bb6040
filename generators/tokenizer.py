"""Tokenizers: any Hugging Face tokenizer from a local directory, or one trained on the corpus.

Every length in longweave is a token count under the tokenizer the dataset is made for, so the
tokenizer is loaded once and wrapped in `Tokenizer`, which offers the few operations the
generators need, all returning numpy arrays: batch encoding without special tokens (the Rust
backend's parallel `encode_batch`), exact counting, decoding, and chat encoding with a loss mask.

A directory is read with the `tokenizers` library and jinja2 only: `tokenizer.json` is the Rust
tokenizer, `tokenizer_config.json` (and a legacy `special_tokens_map.json`) names the special
tokens and the decoding clean-up, `chat_template.jinja` or the config's `chat_template` is the
chat template, rendered by `chat_template.render` as transformers renders it. Loading transformers
costs seconds and the generators need none of it; `Tokenizer.hf` builds the transformers object
on first use for the callers that hand a tokenizer to Hugging Face code (the trainer).

Without a tokenizer directory, `train_tokenizer` trains a byte-level BPE (vocab 8192 by default)
on the corpus with the `tokenizers` library and writes it as a normal Hugging Face directory with
BOS/EOS/PAD tokens and a ChatML chat template (the files transformers' `save_pretrained` writes),
cached under a hash of corpus and settings so the second run loads it in milliseconds. A dataset
records the tokenizer's name and the sha256 of its `tokenizer.json`; the trainer refuses data
made with another one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import chat_template
from .errors import TokenizerError
from .paths import Roots, open_regular, refuse_dotdot, regular_files, require_inside

if TYPE_CHECKING:
    from .corpus import Corpus

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
# The named special tokens of a Hugging Face tokenizer, in transformers' order; a chat template
# sees each one that is set as a variable of that name.
SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
CHAT_TEMPLATE_FILE = "chat_template.jinja"
CHAT_TEMPLATE_DIR = "additional_chat_templates"  # named templates beside the default, one .jinja each
# The clean-up transformers' decode applies with clean_up_tokenization_spaces (made for WordPiece).
CLEAN_UP = [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m")]
CLEAN_UP += [(" 's", "'s"), (" 've", "'ve"), (" 're", "'re")]


@dataclass
class Tokenizer:
    """A fast tokenizer (the Rust `tokenizers.Tokenizer`) with its special tokens, chat template and
    identity (name, sha256 of tokenizer.json), read from a Hugging Face tokenizer directory."""

    backend: Any  # tokenizers.Tokenizer: every encode and decode goes through it
    path: Path
    name: str
    sha256: str
    special_tokens: dict[str, str] = field(default_factory=dict)  # SPECIAL_TOKENS that are set, as text
    chat_template: str | dict[str, str] | None = None  # one template, or named ones ("default", "tool_use", ...)
    clean_up_tokenization_spaces: bool = False
    _hf: Any = field(default=None, init=False, repr=False, compare=False)

    def _id(self, key: str) -> int | None:
        token = self.special_tokens.get(key)
        token_id: int | None = self.backend.token_to_id(token) if token else None
        return token_id

    @property
    def bos_id(self) -> int | None:
        return self._id("bos_token")

    @property
    def eos_id(self) -> int | None:
        return self._id("eos_token")

    @property
    def pad_id(self) -> int | None:
        return self._id("pad_token")

    @property
    def vocab_size(self) -> int:
        """Every id the tokenizer can emit: the model's vocabulary and the added tokens."""
        size: int = self.backend.get_vocab_size(with_added_tokens=True)
        return size

    @property
    def bos_token(self) -> str | None:
        """BOS as text (what a rendered prompt holds), or None without one."""
        return self.special_tokens["bos_token"] if self.bos_id is not None else None

    @property
    def eos_token(self) -> str | None:
        """EOS as text, or None without one."""
        return self.special_tokens["eos_token"] if self.eos_id is not None else None

    @property
    def hf(self) -> Any:
        """The same directory as a transformers `PreTrainedTokenizerFast`, loaded on first use.

        For Hugging Face code that takes a tokenizer object (saving a model directory, TRL,
        collators); the generators never use it, so they never import transformers.
        """
        if self._hf is None:
            from transformers import AutoTokenizer

            self._hf = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        return self._hf

    def _template(self) -> str:
        template = self.chat_template
        if isinstance(template, dict):
            # transformers' choice without a template name or tools: the one named "default".
            if "default" not in template:
                raise TokenizerError(
                    FIELD,
                    f"'{self.name}' has named chat templates ({', '.join(sorted(template))}) but none named default",
                    "add a default chat template",
                )
            template = template["default"]
        if not template:
            raise TokenizerError(FIELD, f"'{self.name}' has no chat template", "use a tokenizer with a chat_template")
        return template

    def render_chat(self, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
        """The chat as text through the tokenizer's chat template (TokenizerError without one)."""
        return chat_template.render(self._template(), messages, add_generation_prompt, self.special_tokens)

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
        """The text of `ids`, as transformers' `decode` gives it for the same directory."""
        text: str = self.backend.decode(list(map(int, ids)), skip_special_tokens=skip_special_tokens)
        # transformers skips the clean-up for BPE models, where it would delete real spaces.
        if self.clean_up_tokenization_spaces and type(self.backend.model).__name__ != "BPE":
            for old, new in CLEAN_UP:
                text = text.replace(old, new)
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
        return bool(self.chat_template)

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
        template = self.chat_template
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


def byte_level_pipeline(tok: Tokenizer) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """`tokenizer.json` as a dict and its pre-tokenizer steps, when the pipeline is the byte-level
    family's: no normalizer (which could rewrite or erase text), no dropout, `Split` regexes (or
    none) then `ByteLevel`; None otherwise. What `joins.joinable` and the token store's lazy mode
    check before their own conditions."""
    spec: dict[str, Any] = json.loads(tok.backend.to_str())
    if spec.get("normalizer") is not None or (spec.get("model") or {}).get("dropout"):
        return None
    pre = spec.get("pre_tokenizer") or {}
    steps: list[dict[str, Any]] = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    if not steps or steps[-1].get("type") != "ByteLevel" or any(s.get("type") != "Split" for s in steps[:-1]):
        return None
    return spec, steps


_BYTE_TABLES: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # sha256 -> (bytes, starts, lengths)


def _byte_chars() -> dict[str, int]:
    """The byte-level alphabet: the character that stands for each byte in a vocabulary (printable
    Latin-1 bytes stand for themselves, the rest for 256 + their rank)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {chr(b): b for b in keep}
    extra = 0
    for b in range(256):
        if b not in keep:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def byte_decoder(tok: Tokenizer) -> Callable[[Sequence[int] | np.ndarray], str] | None:
    """`ids -> text` equal to `tok.backend.decode(ids, skip_special_tokens=False)` for a byte-level
    pipeline with a lone ByteLevel decoder (None otherwise), from a table of each token's bytes:
    many times faster than the backend's decode of long documents, which builds a string per
    token. A token whose characters are all in the byte alphabet is those bytes (an added token
    such as "<|endoftext|>" too); one with any other character is its own UTF-8, as the backend's
    ByteLevel decoder does; the joined bytes decode with U+FFFD for each broken sequence. The
    table is one flat byte array with each token's start and length, so a decode is a numpy
    gather (no Python-level work per token)."""
    if tok.sha256 not in _BYTE_TABLES:
        pipeline = byte_level_pipeline(tok)
        decoder = (pipeline[0].get("decoder") or {}) if pipeline else {}
        if decoder.get("type") != "ByteLevel":
            return None
        chars = _byte_chars()
        backend = tok.backend
        pieces = [b""] * backend.get_vocab_size(with_added_tokens=True)
        for token, i in backend.get_vocab(with_added_tokens=True).items():
            if all(c in chars for c in token):
                pieces[i] = bytes(chars[c] for c in token)
            else:
                pieces[i] = token.encode("utf-8")
        lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
        starts = np.zeros(len(pieces), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        _BYTE_TABLES[tok.sha256] = (np.frombuffer(b"".join(pieces), dtype=np.uint8), starts, lengths)
    flat, starts, lengths = _BYTE_TABLES[tok.sha256]

    def decode(ids: Sequence[int] | np.ndarray) -> str:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return ""
        n = lengths[ids]
        ends = np.cumsum(n)
        # Byte j of the output is flat[starts[ids[t]] + (j - first output byte of token t)].
        at = np.arange(int(ends[-1]), dtype=np.int64) + np.repeat(starts[ids] - (ends - n), n)
        raw: bytes = flat[at].tobytes()
        return raw.decode("utf-8", "replace")

    return decode


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
        tok = _read_directory(p)
    except Exception as exc:
        raise TokenizerError(
            field,
            f"'{path}' could not be loaded ({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})",
            "check tokenizer.json and tokenizer_config.json in that directory",
        ) from None
    return tok


def _token_text(value: Any) -> str | None:
    """A special token as the config gives it: its text, or an AddedToken dict with `content`."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _added_token(cls: Any, value: Any) -> Any:
    """A special `tokenizers.AddedToken` from a token's text or its settings (an AddedToken dict)."""
    if isinstance(value, dict):
        keys = ("lstrip", "rstrip", "single_word", "normalized")
        return cls(value["content"], special=True, **{k: bool(value[k]) for k in keys if k in value})
    return cls(value, special=True, normalized=False)


def _chat_templates(p: Path, cfg: dict[str, Any]) -> str | dict[str, str] | None:
    """The directory's chat template(s), where transformers looks: `chat_template.jinja` (the default)
    and `additional_chat_templates/*.jinja` take priority over the config's `chat_template`, which is
    one string or a list of `{"name", "template"}`."""
    found: dict[str, str] = {}
    if (p / CHAT_TEMPLATE_FILE).is_file():
        found["default"] = (p / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")
    if (p / CHAT_TEMPLATE_DIR).is_dir():
        for f in sorted((p / CHAT_TEMPLATE_DIR).glob("*.jinja")):
            found[f.name.removesuffix(".jinja")] = f.read_text(encoding="utf-8")
    if found:
        return found["default"] if list(found) == ["default"] else found
    template = cfg.get("chat_template")
    if isinstance(template, list):
        return {str(t["name"]): str(t["template"]) for t in template}
    if isinstance(template, dict):
        return {str(k): str(v) for k, v in template.items()}
    return template if isinstance(template, str) and template else None


def _read_directory(p: Path) -> Tokenizer:
    """The tokenizer of directory `p` (which has a tokenizer.json), read as transformers reads it."""
    from tokenizers import AddedToken
    from tokenizers import Tokenizer as RawTokenizer

    backend = RawTokenizer.from_file(str(p / "tokenizer.json"))
    cfg: dict[str, Any] = {}
    if (p / "tokenizer_config.json").is_file():
        cfg = json.loads((p / "tokenizer_config.json").read_text(encoding="utf-8"))
        if not isinstance(cfg, dict):
            raise ValueError("tokenizer_config.json is not a JSON object")
    # A legacy special_tokens_map.json overrides the config's tokens, unless the config lists its
    # added tokens itself (transformers reads the map only then).
    if "added_tokens_decoder" not in cfg and (p / "special_tokens_map.json").is_file():
        cfg = {**cfg, **json.loads((p / "special_tokens_map.json").read_text(encoding="utf-8"))}
    special = {key: text for key in SPECIAL_TOKENS if (text := _token_text(cfg.get(key))) is not None}
    extras = cfg.get("extra_special_tokens") or cfg.get("additional_special_tokens") or []
    named = [cfg[key] for key in special]
    extra = [t for t in (extras if isinstance(extras, list) else []) if _token_text(t) is not None]
    # As transformers registers them on load: a named special token (bos, eos, pad, ...) becomes a
    # special added token of the backend, keeping the settings tokenizer.json gives it (lstrip, ...),
    # so decode skips it with skip_special_tokens and its text never splits; an extra one is added
    # only when tokenizer.json does not list it; a token the vocabulary lacks is appended to it.
    have = {t.content: t for t in backend.get_added_tokens_decoder().values()}
    added = []
    for value in named + extra:
        text = _token_text(value)
        if text in have and (have[text].special or value in extra):
            continue
        if text in have:
            value = {k: getattr(have[text], k) for k in ("content", "lstrip", "rstrip", "single_word", "normalized")}
        added.append(_added_token(AddedToken, value))
    if added:
        backend.add_special_tokens(added)
    name = cfg.get("longweave_name") or cfg.get("name_or_path") or p.name
    return Tokenizer(
        backend,
        p,
        str(name),
        file_sha256(p / "tokenizer.json"),
        special_tokens=special,
        chat_template=_chat_templates(p, cfg),
        clean_up_tokenization_spaces=bool(cfg.get("clean_up_tokenization_spaces", False)),
    )


def train_tokenizer(
    corpus: Corpus,
    vocab_size: int = 8192,
    max_chars: int = 20_000_000,
    *,
    cache_dir: str | Path,
) -> Path:
    """Train (or find in the cache) a byte-level BPE on the corpus; returns its directory.

    The directory holds what transformers' `save_pretrained` writes for this tokenizer (the test
    checks that `AutoTokenizer` loads it with the same tokens, ids and template): tokenizer.json,
    tokenizer_config.json (the special tokens and longweave's name) and chat_template.jinja.
    """
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

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
    # The post-processor transformers sets for a tokenizer that adds no BOS/EOS itself: part of
    # tokenizer.json, whose sha256 seeds every dataset made with it (tests/generators/test_golden.py).
    raw.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B:1", special_tokens=[])
    config = {  # the keys and order transformers writes; model_max_length is its "no limit" (int(1e30))
        "backend": "tokenizers",
        "bos_token": BOS,
        "eos_token": EOS,
        "extra_special_tokens": [IM_START, IM_END],
        "model_max_length": int(1e30),
        "pad_token": PAD,
        "tokenizer_class": "TokenizersBackend",
        "longweave_name": f"longweave-bpe{vocab_size}-{corpus.source if corpus.source == 'stdlib' else key}",
    }
    # Write to a temporary sibling and rename, so a crash never leaves half a tokenizer behind.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".tmp-"))
    raw.save(str(tmp / "tokenizer.json"))
    (tmp / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (tmp / CHAT_TEMPLATE_FILE).write_text(CHATML_TEMPLATE, encoding="utf-8")
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
