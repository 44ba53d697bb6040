"""`Tokenizer` reads a tokenizer directory as transformers does, without transformers.

Each case writes a directory (the trained test tokenizer's tokenizer.json with another config and
chat template) and compares our answers with `AutoTokenizer.from_pretrained` on the same
directory (transformers comes with the dev extras): the rendered chat for every template the tests
use (our ChatML, a Llama-3-like and a Qwen-like template with a default system message, one
that uses tojson, loop controls, raise_exception and generation tags), single- and multi-turn,
with and without the generation prompt; the special tokens, ids and vocabulary size; decoding
with and without clean-up; the directory `train_tokenizer` writes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import TemplateError

from longweave.generators.corpus import Corpus
from longweave.generators.tokenizer import CHATML_TEMPLATE, Tokenizer, load_tokenizer, train_tokenizer

transformers = pytest.importorskip("transformers")

LLAMA3 = (
    "{% set loop_messages = messages %}"
    "{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# Qwen-like: a default system message when the chat has none; newlines and indentation inside
# blocks, which trim_blocks and lstrip_blocks remove.
QWEN = """{%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
{%- else %}
    {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if not (message.role == 'system' and loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""
# Blocks without "-": trim_blocks drops the newline after a tag, lstrip_blocks the indent before one.
FEATURES = """{% for message in messages %}
  {% if message.role not in ['system', 'user', 'assistant'] %}
    {{ raise_exception('unknown role ' + message.role) }}
  {% endif %}
  {% if message.role == 'system' %}{% continue %}{% endif %}
  {% if message.role == 'assistant' %}
{% generation %}[A] {{ message.content }}{{ eos_token }}{% endgeneration %}

  {% else %}
[{{ message.role | upper }}] {{ message | tojson }} {{ {'k': message.content, 'b': '<&>'} | tojson(indent=1, sort_keys=True) }}
  {% endif %}
  {% if loop.index > 5 %}{% break %}{% endif %}
{% endfor %}
{% if add_generation_prompt %}[A] {% endif %}"""
TEMPLATES = {"chatml": CHATML_TEMPLATE, "llama3": LLAMA3, "qwen": QWEN, "features": FEATURES}

SYSTEM = {"role": "system", "content": 'Answer from the table. Prices are in "EUR" & <b>net</b>.'}
TURNS = [
    {"role": "user", "content": "What is the salary of E0412?\n  (two lines, naïve ünïcode)"},
    {"role": "assistant", "content": "81250 "},
    {"role": "user", "content": "And of E0413?"},
    {"role": "assistant", "content": "90000"},
]
CHATS = {
    "single": [TURNS[0]],
    "single-answered": TURNS[:2],
    "system": [SYSTEM, *TURNS[:2]],
    "multi": [SYSTEM, *TURNS],
    "multi-no-system": TURNS,
}


def tokenizer_dir(base: Path, out: Path, config: dict[str, Any], files: dict[str, str] | None = None) -> Path:
    """A directory with the test tokenizer's tokenizer.json, `config` and extra text files."""
    out.mkdir(parents=True)
    shutil.copy(base / "tokenizer.json", out / "tokenizer.json")
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    for name, text in (files or {}).items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    return out


def specials(**extra: Any) -> dict[str, Any]:
    return {"bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>", **extra}


def same_as_transformers(tok: Tokenizer, hf: Any) -> None:
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id)
    assert (tok.bos_token, tok.eos_token) == (hf.bos_token, hf.eos_token)
    assert tok.vocab_size == len(hf)


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_rendering_equals_apply_chat_template(tokenizer: Tokenizer, tmp_path: Path, template: str) -> None:
    d = tokenizer_dir(tokenizer.path, tmp_path / template, specials(chat_template=TEMPLATES[template]))
    tok, hf = load_tokenizer(d), transformers.AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    same_as_transformers(tok, hf)
    seen = set()
    for name, chat in CHATS.items():
        for gen in (False, True):
            ours = tok.render_chat(chat, add_generation_prompt=gen)
            assert ours == hf.apply_chat_template(chat, tokenize=False, add_generation_prompt=gen), (name, gen)
            seen.add(ours)
    assert len(seen) >= 2 * len(CHATS) - 4  # the cases differ (the features template drops system messages)
    if template == "qwen":
        assert "You are a helpful assistant." in tok.render_chat(CHATS["single"])
    if template == "features":
        assert '{"role": "user", "content": "What is' in tok.render_chat(CHATS["single"])  # not HTML-escaped
        with pytest.raises(TemplateError, match="unknown role tool"):
            tok.render_chat([{"role": "tool", "content": "x"}])


def test_template_file_and_named_templates_are_read_where_transformers_reads_them(
    tokenizer: Tokenizer, tmp_path: Path
) -> None:
    # chat_template.jinja wins over the config's entry.
    d = tokenizer_dir(tokenizer.path, tmp_path / "file", specials(chat_template=LLAMA3), {"chat_template.jinja": QWEN})
    hf = transformers.AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    tok = load_tokenizer(d)
    assert tok.chat_template == hf.chat_template == QWEN
    assert tok.render_chat(CHATS["multi"]) == hf.apply_chat_template(CHATS["multi"], tokenize=False)
    # The list-of-named-templates form: "default" renders; the digest is today's (of the name -> template map).
    named = [{"name": "default", "template": LLAMA3}, {"name": "tool_use", "template": QWEN}]
    d = tokenizer_dir(tokenizer.path, tmp_path / "named", specials(chat_template=named))
    hf = transformers.AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    tok = load_tokenizer(d)
    assert tok.chat_template == hf.chat_template == {"default": LLAMA3, "tool_use": QWEN}
    assert tok.render_chat(CHATS["system"], True) == hf.apply_chat_template(
        CHATS["system"], tokenize=False, add_generation_prompt=True
    )
    import hashlib

    digest = hashlib.sha256(json.dumps(hf.chat_template, sort_keys=True).encode()).hexdigest()
    assert tok.chat_template_sha256 == digest
    assert load_tokenizer(tokenizer.path).chat_template_sha256 == hashlib.sha256(CHATML_TEMPLATE.encode()).hexdigest()


def test_added_token_dicts_and_a_missing_special_token(tokenizer: Tokenizer, tmp_path: Path) -> None:
    added = {"__type": "AddedToken", "content": "<|eos|>", "lstrip": False, "rstrip": False, "special": True}
    config = specials(eos_token=added, unk_token="<|unk|>", chat_template=LLAMA3)  # <|unk|> is not in the vocab
    d = tokenizer_dir(tokenizer.path, tmp_path / "added", config)
    tok, hf = load_tokenizer(d), transformers.AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    same_as_transformers(tok, hf)
    assert tok.eos_token == "<|eos|>" and tok.vocab_size == tokenizer.vocab_size + 1
    assert tok.backend.token_to_id("<|unk|>") == hf.unk_token_id == tokenizer.vocab_size
    ids = tok.encode("x<|unk|>y")
    assert ids.tolist() == hf.encode("x<|unk|>y", add_special_tokens=False)
    assert tok.render_chat(CHATS["multi"]) == hf.apply_chat_template(CHATS["multi"], tokenize=False)
    # Without a chat template: no template, and the refusal.
    d = tokenizer_dir(tokenizer.path, tmp_path / "none", specials())
    assert not load_tokenizer(d).has_chat_template()
    assert not transformers.AutoTokenizer.from_pretrained(str(d), local_files_only=True).chat_template


def wordlevel_dir(out: Path, clean_up: bool) -> Path:
    """A word-level tokenizer with a WordPiece decoder, where transformers' clean-up applies (it skips BPE)."""
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["[UNK]", "[PAD]", "hello", "world", ".", ",", "it", "'s", "n't", "!"])}
    raw = RawTokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.decoder = decoders.WordPiece(cleanup=False)  # the decoder's own clean-up would hide ours
    out.mkdir(parents=True)
    raw.save(str(out / "tokenizer.json"))
    config = {"unk_token": "[UNK]", "pad_token": "[PAD]", "clean_up_tokenization_spaces": clean_up}
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return out


@pytest.mark.parametrize("clean_up", [False, True])
def test_decode_equals_transformers(tokenizer: Tokenizer, tmp_path: Path, clean_up: bool) -> None:
    d = wordlevel_dir(tmp_path / "wl", clean_up)
    tok, hf = load_tokenizer(d), transformers.AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    ids = tok.encode("hello , world . it 's n't [PAD] hello !").tolist()
    for skip in (False, True):
        assert tok.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip), skip
    assert ("hello, world." in tok.decode(ids)) == clean_up  # the clean-up ran exactly when asked for
    # BPE: transformers never cleans up, whatever the config says.
    bpe = tokenizer_dir(tokenizer.path, tmp_path / "bpe", specials(clean_up_tokenization_spaces=clean_up))
    tok, hf = load_tokenizer(bpe), transformers.AutoTokenizer.from_pretrained(str(bpe), local_files_only=True)
    text = "a , b . it 's<|eos|> don 't !"
    ids = tok.encode(text).tolist()
    for skip in (False, True):
        assert tok.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip), skip
    assert tok.decode(ids) == text


def test_the_trained_directory_loads_identically_in_transformers(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    for i in range(30):
        (tmp_path / "docs" / f"{i}.txt").write_text(f"document {i} " + "lorem ipsum, dolor sit amet. It's " * 40)
    d = train_tokenizer(Corpus.open(tmp_path / "docs"), vocab_size=400, cache_dir=tmp_path / "c")
    tok, hf = load_tokenizer(d), transformers.AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    same_as_transformers(tok, hf)
    assert hf.chat_template == tok.chat_template == CHATML_TEMPLATE
    assert set(hf.all_special_tokens) == {"<|bos|>", "<|eos|>", "<|pad|>", "<|im_start|>", "<|im_end|>"}
    text = "document 7 lorem<|im_start|> ipsum, naïve\n"
    assert tok.encode(text).tolist() == hf.encode(text, add_special_tokens=False) == hf.encode(text)
    assert tok.decode(tok.encode(text)) == hf.decode(hf.encode(text)) == text
    for gen in (False, True):
        assert tok.render_chat(CHATS["multi"], gen) == hf.apply_chat_template(
            CHATS["multi"], tokenize=False, add_generation_prompt=gen
        )
    # The lazily built transformers object is the same directory.
    assert tok.hf.get_vocab() == hf.get_vocab() and tok.hf is tok.hf


def test_a_listed_added_token_keeps_its_settings(tokenizer: Tokenizer, tmp_path: Path) -> None:
    # In tokenizer.json <|pad|> strips the space before it and is not special, nor is <|im_end|>:
    # as in transformers, the config's pad_token makes the pad special with its lstrip, while an
    # extra special token that tokenizer.json lists stays as listed there.
    spec = json.loads((tokenizer.path / "tokenizer.json").read_text())
    by_content = {t["content"]: t for t in spec["added_tokens"]}
    by_content["<|pad|>"].update(lstrip=True, special=False)
    by_content["<|im_end|>"]["special"] = False
    d = tmp_path / "tok"
    d.mkdir()
    (d / "tokenizer.json").write_text(json.dumps(spec))
    (d / "tokenizer_config.json").write_text(json.dumps(specials(extra_special_tokens=["<|im_end|>"])))
    tok, hf = load_tokenizer(d), transformers.AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    same_as_transformers(tok, hf)
    text = "a <|pad|> b<|im_end|> c"
    ids = tok.encode(text).tolist()
    assert ids == hf.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == hf.decode(ids) == "a<|pad|> b<|im_end|> c"  # the space went into the pad
    assert tok.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)
    assert tok.decode(ids, skip_special_tokens=True) == "a b<|im_end|> c"
