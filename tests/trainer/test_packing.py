"""Packing: best-fit rows, targets inside documents, SFT masks, restarted positions, and the masking
promise on a real model: changing one packed document's tokens changes no logit of another.

    .venv/bin/python -m pytest tests/trainer/test_packing.py -q
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from longweave.generators.errors import ConfigError
from longweave.trainer import attention, config
from longweave.trainer.data import Sample
from longweave.trainer.packing import LongSample, Packer, fit_to_row, split_long, truncate_left

from .conftest import tiny_llama


class ListSource:
    def __init__(self, samples):
        self.samples, self.pos = samples, 0

    def __iter__(self):
        while self.pos < len(self.samples):
            self.pos += 1
            yield self.samples[self.pos - 1]

    def state(self):
        return {"pos": self.pos}

    def load_state(self, s):
        self.pos = s["pos"]

    def commit(self, s):
        pass


def sample(i: int, n: int, mask=None) -> Sample:
    return Sample(f"d/00000/{i:06d}", np.arange(10 + i * 100, 10 + i * 100 + n, dtype=np.int32) % 250 + 5, mask)


def test_best_fit_rows_targets_and_positions():
    lengths = [40, 30, 25, 20, 10, 5]
    src = ListSource([sample(i, n) for i, n in enumerate(lengths)])
    p = Packer(src, seq_len=64, rows=2, pad_id=0, buffer=16)
    b = p.next_batch()
    # 130 tokens offered for 2 x 64 slots: every placed piece fits, nothing is lost or duplicated.
    used = (b.doc_ids >= 0).sum(dim=1).tolist()
    assert all(u <= 64 for u in used)
    placed = sum(used)
    left = sum(len(s.input_ids) for _, s in p.buffer)
    assert placed + left == sum(lengths)
    assert placed >= 115  # BFD leaves at most one short piece out here
    for r in range(2):
        docs = b.doc_ids[r]
        for d in docs.unique().tolist():
            if d < 0:
                continue
            idx = (docs == d).nonzero().flatten()
            # Positions restart at 0 and are contiguous within a document.
            assert b.position_ids[r, idx].tolist() == list(range(len(idx)))
            # The target of a token is the next token of the same document; the last has none.
            assert b.targets[r, idx[:-1]].tolist() == b.input_ids[r, idx[1:]].tolist()
            assert b.targets[r, idx[-1]].item() == -100
        assert (b.targets[r, docs < 0] == -100).all()
    # The leftover piece is placed first in the next batch.
    b2 = p.next_batch()
    assert b2 is not None and p.next_batch() is None


def test_sft_loss_mask_only_answer_tokens_carry_loss():
    mask = np.zeros(20, bool)
    mask[12:] = True
    p = Packer(ListSource([sample(0, 20, mask)]), seq_len=32, rows=1, pad_id=0)
    b = p.next_batch()
    carrying = (b.targets[0] != -100).nonzero().flatten().tolist()
    assert carrying == list(range(11, 19))  # tokens 11..18 predict answer tokens 12..19


def test_long_samples_split_into_row_sized_pieces():
    pieces = split_long(sample(0, 150), 64)
    assert [len(p.input_ids) for p in pieces] == [64, 64, 22]
    assert np.concatenate([p.input_ids for p in pieces]).tolist() == sample(0, 150).input_ids.tolist()


def test_packer_state_resumes_to_identical_batches():
    rng = np.random.default_rng(0)
    samples = [sample(i, int(rng.integers(5, 60))) for i in range(40)]
    full = Packer(ListSource(samples), seq_len=64, rows=2, pad_id=0, buffer=8)
    ref = [full.next_batch() for _ in range(8)]
    first = Packer(ListSource(samples), seq_len=64, rows=2, pad_id=0, buffer=8)
    for _ in range(3):
        first.next_batch()
    state = first.state()
    resumed = Packer(ListSource(samples), seq_len=64, rows=2, pad_id=0, buffer=8)
    resumed.load_state(state)
    for want in ref[3:]:
        got = resumed.next_batch()
        assert torch.equal(got.input_ids, want.input_ids) and got.sample_ids == want.sample_ids


@pytest.fixture(scope="module")
def tiny_model():
    return tiny_llama(hidden_size=64, intermediate_size=128, max_position_embeddings=256).eval()


def _logits(model, batch, doc_mask=True, impl="sdpa"):
    """Logits of a packed batch through the dense block mask (sdpa) or per-document SDPA (docs),
    given the inputs the training loop gives (attention.model_inputs)."""
    name = attention.register() if impl == "docs" else "sdpa"
    with torch.no_grad():
        model.config._attn_implementation = name
        try:
            return model(**attention.model_inputs(name, batch, torch.device("cpu"), doc_mask)).logits
        finally:
            model.config._attn_implementation = "sdpa"


@pytest.mark.parametrize("impl", ["docs", "sdpa"])
@pytest.mark.parametrize("target", [0, 1, 2])
def test_changing_one_document_changes_no_logit_of_another(tiny_model, target, impl):
    docs = [sample(0, 50), sample(1, 70), sample(2, 60)]
    batch = Packer(ListSource(docs), seq_len=256, rows=1, pad_id=0).next_batch()
    changed = [Sample(s.id, (s.input_ids * 7 + 3) % 290 if i == target else s.input_ids) for i, s in enumerate(docs)]
    batch2 = Packer(ListSource(changed), seq_len=256, rows=1, pad_id=0).next_batch()
    a, b = _logits(tiny_model, batch, impl=impl), _logits(tiny_model, batch2, impl=impl)
    doc = batch.doc_ids[0]
    tgt_doc = doc[(batch.input_ids[0] != batch2.input_ids[0])].unique()
    assert len(tgt_doc) == 1
    inside = doc == tgt_doc.item()
    others = (doc >= 0) & ~inside
    assert torch.equal(a[0, others], b[0, others]), "a document's logits depend on another document"
    assert not torch.allclose(a[0, inside], b[0, inside])  # the edited document itself does change


@pytest.mark.parametrize("impl", ["docs", "sdpa"])
def test_without_doc_mask_later_documents_see_earlier_ones(tiny_model, impl):
    # The control: with attention across documents (CIP's setting) the same edit does leak.
    docs = [sample(0, 50), sample(1, 70)]
    # Best-fit decreasing places the longer document (70 tokens) first; edit it.
    changed = [docs[0], Sample(docs[1].id, (docs[1].input_ids * 7 + 3) % 290)]
    b1 = Packer(ListSource(docs), seq_len=128, rows=1, pad_id=0, doc_mask=False).next_batch()
    b2 = Packer(ListSource(changed), seq_len=128, rows=1, pad_id=0, doc_mask=False).next_batch()
    assert b1.doc_ids[0, :70].eq(0).all() and b1.doc_ids[0, 70:120].eq(1).all()
    a, b = _logits(tiny_model, b1, False, impl), _logits(tiny_model, b2, False, impl)
    assert b1.position_ids[0, :120].tolist() == list(range(120))
    assert b1.targets[0, 69].item() == b1.input_ids[0, 70].item()  # one sequence: targets cross borders
    assert not torch.allclose(a[0, 70:120], b[0, 70:120])


@pytest.mark.parametrize("impl", ["docs", "sdpa"])
def test_document_mask_matches_separate_forward_passes(tiny_model, impl):
    docs = [sample(0, 40), sample(1, 30)]
    batch = Packer(ListSource(docs), seq_len=128, rows=1, pad_id=0).next_batch()
    packed = _logits(tiny_model, batch, impl=impl)
    for d, _s in enumerate(docs):
        idx = (batch.doc_ids[0] == d).nonzero().flatten()
        ids = batch.input_ids[0, idx][None]
        with torch.no_grad():
            alone = tiny_model(input_ids=ids).logits
        torch.testing.assert_close(packed[0, idx], alone[0], atol=1e-5, rtol=1e-5)


def test_per_document_attention_equals_the_dense_mask_with_gradients(tiny_model):
    docs = [sample(i, n) for i, n in enumerate([50, 20, 90, 33, 7])]
    batch = Packer(ListSource(docs), seq_len=128, rows=2, pad_id=0).next_batch()
    real = batch.doc_ids >= 0
    dense, per_doc = _logits(tiny_model, batch), _logits(tiny_model, batch, impl="docs")
    torch.testing.assert_close(dense[real], per_doc[real], atol=1e-5, rtol=1e-5)
    grads = []
    for impl in ("sdpa", "docs"):
        tiny_model.zero_grad()
        name = attention.register() if impl == "docs" else "sdpa"
        tiny_model.config._attn_implementation = name
        out = tiny_model(**attention.model_inputs(name, batch, torch.device("cpu"), True)).logits
        tiny_model.config._attn_implementation = "sdpa"
        torch.nn.functional.cross_entropy(out.flatten(0, 1), batch.targets.flatten(), ignore_index=-100).backward()
        grads.append(torch.cat([p.grad.flatten() for p in tiny_model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_each_implementation_gets_its_own_inputs():
    batch = Packer(ListSource([sample(0, 20), sample(1, 30)]), seq_len=64, rows=1, pad_id=0).next_batch()
    cpu = torch.device("cpu")
    keys = {
        impl: set(attention.model_inputs(impl, batch, cpu, True))
        for impl in (attention.NAME, attention.FLASH, "sdpa", "eager")
    }
    assert keys[attention.NAME] == {"input_ids", "position_ids", "doc_spans"}
    varlen = {"cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k"}  # tests/trainer/test_attention.py
    assert keys[attention.FLASH] == {"input_ids", "position_ids"} | varlen  # explicit document boundaries
    assert keys["sdpa"] == keys["eager"] == {"input_ids", "position_ids", "attention_mask"}
    one_row = attention.model_inputs(attention.NAME, batch, cpu, False)["doc_spans"]
    assert one_row == [[(0, 50), (50, 64)]]  # doc_mask off: the real tokens are one span, then padding
    assert attention.resolve("auto", cpu) == "docs" and attention.resolve("eager", cpu) == "eager"
    assert attention.load_name("docs") == "sdpa"


def test_doc_spans():
    d = torch.tensor([[0, 0, 1, 1, 1, -1, -1], [0, 0, 0, 0, 0, 0, 0]])
    assert attention.doc_spans(d) == [[(0, 2), (2, 5), (5, 7)], [(0, 7)]]


def test_a_live_source_with_nothing_new_does_not_hold_back_what_is_buffered():
    class Live(ListSource):
        def __iter__(self):
            yield None  # nothing yet and nothing buffered: keep waiting
            yield self.samples[0]
            yield None  # nothing new: train on what is here
            yield from self.samples[1:]

    p = Packer(Live([sample(0, 10), sample(1, 12), sample(2, 14)]), seq_len=64, rows=1, pad_id=0, buffer=8)
    assert p.next_batch().sample_ids == ["d/00000/000000"]
    assert sorted(p.next_batch().sample_ids) == ["d/00000/000001", "d/00000/000002"]
    assert p.next_batch() is None


# -- samples longer than a row (data.long_samples) ----------------------------------------------------
def _long_sft(n: int = 150, answer: int = 6) -> Sample:
    mask = np.zeros(n, bool)
    mask[-answer:] = True
    s = sample(1, n, mask)
    s.segments = np.array([0, 40, 100, n - answer], np.int32)
    return s


def test_long_sample_refused_by_default_naming_both_lengths():
    p = Packer(ListSource([sample(0, 20), _long_sft()]), seq_len=64, rows=1, pad_id=0)
    with pytest.raises(LongSample) as err:
        p.next_batch()
    line = err.value.one_line()
    assert "\n" not in line and "150 tokens" in line and "data.seq_len 64" in line
    assert err.value.field == "data.long_samples" and "truncate_left" in line
    assert config.validate({}).data.long_samples == "refuse"


def test_truncate_left_keeps_the_answer_and_logs_a_count(caplog):
    s = _long_sft()
    p = Packer(ListSource([s, sample(2, 10)]), seq_len=64, rows=2, pad_id=0, long_samples="truncate_left")
    with caplog.at_level(logging.WARNING, logger="longweave.trainer.packing"):
        b = p.next_batch()
    assert p.long_seen == 1 and "1 samples longer than data.seq_len 64" in caplog.text
    row = int((b.doc_ids == 0).sum(dim=1).argmax())  # the row holding the truncated sample
    kept = b.input_ids[row, b.doc_ids[row] == 0].numpy()
    assert kept.tolist() == s.input_ids[-64:].tolist()
    # Every answer token still carries loss: the targets of the kept tokens are the answer's.
    carrying = b.targets[row][b.targets[row] != -100].numpy()
    assert carrying.tolist() == s.input_ids[-6:].tolist()
    cut = truncate_left(s, 64)
    assert cut.segments.tolist() == [0, 100 - 86, 144 - 86] and cut.id == s.id


def test_split_keeps_every_token_and_logs_a_count(caplog):
    s = _long_sft()
    p = Packer(ListSource([s]), seq_len=64, rows=3, pad_id=0, long_samples="split")
    with caplog.at_level(logging.WARNING, logger="longweave.trainer.packing"):
        b = p.next_batch()
    assert p.long_seen == 1 and "split" in caplog.text
    assert int((b.doc_ids >= 0).sum()) == 150 and b.sample_ids == [s.id]
    assert [len(x.input_ids) for x in fit_to_row(s, 64, "split")] == [64, 64, 22]


def test_long_samples_bad_value_is_one_line():
    with pytest.raises(ConfigError, match=r"data\.long_samples"):
        Packer(ListSource([]), seq_len=64, rows=1, pad_id=0, long_samples="cut")
    with pytest.raises(ConfigError, match="long_samples"):
        config.validate({"data": {"long_samples": "cut"}})


def test_the_trainer_cli_refuses_a_long_sample_in_one_line(dataset_dir, tmp_path):
    import subprocess
    import sys

    sets = [
        f"run_dir={tmp_path / 'run'}",
        "model.path=tiny",
        "data.seq_len=64",  # the fixture's documents run to 200 tokens
        f"data.sources=[{{kind: parquet, path: ['{dataset_dir}']}}]",
        "steps=1",
        "threads=1",
        "progress=false",
    ]
    cmd = [sys.executable, "-m", "longweave.trainer.train", *(a for s in sets for a in ("--set", s))]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert len(lines) == 1 and lines[0].startswith("data.long_samples: sample '"), res.stderr
    assert "more than data.seq_len 64" in lines[0] and "fix:" in lines[0]
