"""Packing: samples into fixed-length rows, best-fit decreasing, with document-aware attention.

Padding wastes compute on every short sample; packing several documents into one row of
`seq_len` tokens does not. Two things must then hold, or packing changes what the model learns:

- Attention never crosses documents (`doc_mask`): each token sees only earlier tokens of its own
  document. Rows carry a document index per token; `attention_mask` turns it into the boolean
  block-diagonal causal mask that SDPA takes on CPU (flex attention has no CPU backward), and on
  GPU with flash-attention the restarted position ids alone mark the documents (varlen kernels).
- Position ids restart at 0 for every document, or follow a position transform (positions.py).

Targets are shifted here, once: the target of token t is token t+1 of the same document, and only
where the record's loss mask (if any) marks token t+1 as carrying loss; everything else is -100.
With `doc_mask` off (CIP wants attention across its interleaved chunks) a row is one long
sequence: plain positions and targets that run across document borders.

A sample longer than a row (`data.long_samples`) is refused by default (`LongSample`, naming both
lengths): cut into row-sized pieces, the answer's piece would no longer see the context it asks
about, and its loss would teach nothing while looking normal. `truncate_left` keeps the last
`seq_len` tokens (the answer and the context nearest it); `split` packs row-sized pieces as
separate documents. Both log a running count.

The packer holds a buffer of `pack_buffer` samples and fills the micro-batch's rows by best-fit
decreasing (each sample, longest first, goes to the row it leaves least room in); samples that fit
nowhere wait for the next micro-batch, oldest first. The buffer is part of the checkpoint, so a
resumed run packs exactly the rows an uninterrupted one would.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from longweave.generators.errors import ConfigError

from . import positions as pos
from .config import DataConfig
from .data import Sample

log = logging.getLogger(__name__)
LONG_SAMPLES = ("refuse", "truncate_left", "split")


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T] long
    targets: torch.Tensor  # [B, T] long, -100 where no loss
    position_ids: torch.Tensor  # [B, T] long
    doc_ids: torch.Tensor  # [B, T] long, -1 on padding
    sample_ids: list[str] = field(default_factory=list)  # samples whose first piece is in this batch

    @property
    def num_loss_tokens(self) -> int:
        return int((self.targets != -100).sum())


def attention_mask(doc_ids: torch.Tensor, doc_mask: bool = True) -> torch.Tensor:
    """[B, 1, T, T] boolean mask, True where attention is allowed.

    Causal and, with `doc_mask`, within one document. A padding token attends to itself only, so
    no softmax row is empty (an all-False row gives NaN in SDPA).
    """
    T = doc_ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=doc_ids.device).tril()
    if doc_mask:
        same = doc_ids[:, :, None] == doc_ids[:, None, :]
    else:
        real = doc_ids >= 0
        same = real[:, :, None] & real[:, None, :]
    eye = torch.eye(T, dtype=torch.bool, device=doc_ids.device)
    return ((same & causal) | eye)[:, None]


class LongSample(ConfigError):
    """A sample is longer than a packed row and `data.long_samples` is `refuse`."""

    def __init__(self, sample_id: str, n: int, seq_len: int) -> None:
        super().__init__(
            "data.long_samples",
            f"sample '{sample_id}' has {n} tokens, more than data.seq_len {seq_len}",
            f"raise data.seq_len to at least {n}, regenerate the data at most {seq_len} tokens long, or set "
            "data.long_samples to truncate_left (keeps the last seq_len tokens, the answer) or split "
            "(row-sized pieces, each its own document)",
        )


def truncate_left(sample: Sample, seq_len: int) -> Sample:
    """The last `seq_len` tokens of a sample: an SFT answer sits at the end, so it stays whole."""
    n = len(sample.input_ids)
    if n <= seq_len:
        return sample
    a = n - seq_len
    seg = None
    if sample.segments is not None:
        s = sample.segments[sample.segments > a] - a
        seg = np.concatenate([[0], s]).astype(np.int32)
    lm = None if sample.loss_mask is None else sample.loss_mask[a:]
    return Sample(sample.id, sample.input_ids[a:], lm, seg)


def split_long(sample: Sample, seq_len: int) -> list[Sample]:
    """A sample longer than a row becomes consecutive pieces (each then packed as a document)."""
    n = len(sample.input_ids)
    if n <= seq_len:
        return [sample]
    out = []
    for k, a in enumerate(range(0, n, seq_len)):
        b = min(n, a + seq_len)
        seg = None
        if sample.segments is not None:
            s = sample.segments[(sample.segments >= a) & (sample.segments < b)] - a
            seg = np.concatenate([[0], s[s > 0]]).astype(np.int32)
        lm = None if sample.loss_mask is None else sample.loss_mask[a:b]
        out.append(Sample(sample.id if k == 0 else f"{sample.id}#{k}", sample.input_ids[a:b], lm, seg))
    return out


def fit_to_row(sample: Sample, seq_len: int, policy: str) -> list[Sample]:
    """What a row takes of one sample under `data.long_samples` (`policy`); raises `LongSample`."""
    n = len(sample.input_ids)
    if n <= seq_len:
        return [sample]
    if policy == "truncate_left":
        return [truncate_left(sample, seq_len)]
    if policy == "split":
        return split_long(sample, seq_len)
    raise LongSample(sample.id, n, seq_len)


class Packer:
    """Turns a stream of samples into micro-batches of `rows` packed rows."""

    def __init__(
        self,
        source: Any,
        *,
        seq_len: int,
        rows: int,
        pad_id: int,
        doc_mask: bool = True,
        buffer: int = 64,
        positions: str = "none",
        target_window: int | None = None,
        pose_chunks: int = 2,
        seed: int = 0,
        long_samples: str = "refuse",
    ) -> None:
        if long_samples not in LONG_SAMPLES:
            raise ConfigError("data.long_samples", f"unknown policy '{long_samples}'", "use " + ", ".join(LONG_SAMPLES))
        self.long_samples = long_samples
        self.long_seen = 0  # samples longer than a row this process has truncated or split
        self.source, self.seq_len, self.rows, self.pad_id = source, seq_len, rows, pad_id
        self.doc_mask, self.buffer_size = doc_mask, max(buffer, rows)
        self.positions, self.window, self.pose_chunks, self.seed = positions, target_window, pose_chunks, seed
        self.buffer: list[tuple[int, Sample]] = []  # (age in micro-batches, piece)
        self.count = 0  # micro-batches made: seeds the position transform of each row
        self._it: Iterator[Sample | None] | None = None
        self._exhausted = False

    @classmethod
    def from_config(cls, cfg: DataConfig, source: Any, *, rows: int, pad_id: int, seed: int = 0) -> Packer:
        """The packer a run's `data` section describes, filling micro-batches of `rows` rows (the
        run's micro_batch) from `source` with `pad_id` (the tokenizer's)."""
        return cls(
            source,
            seq_len=cfg.seq_len,
            rows=rows,
            pad_id=pad_id,
            doc_mask=cfg.doc_mask,
            buffer=cfg.pack_buffer,
            positions=cfg.positions,
            target_window=cfg.target_window,
            pose_chunks=cfg.pose_chunks,
            seed=seed,
            long_samples=cfg.long_samples,
        )

    # -- state ------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "source": self.source.state(),
            "count": self.count,
            "buffer": [[age, s.to_state()] for age, s in self.buffer],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.source.load_state(state["source"])
        self.count = int(state["count"])
        self.buffer = [(int(age), Sample.from_state(s)) for age, s in state["buffer"]]

    # -- packing ----------------------------------------------------------------------------------
    def _fill(self) -> None:
        if self._it is None:
            self._it = iter(self.source)
        while not self._exhausted and len(self.buffer) < self.buffer_size:
            try:
                s = next(self._it)
            except StopIteration:
                self._exhausted = True
                break
            if s is None:  # a live stream has nothing new: pack what is here, if anything
                if self.buffer:
                    break
                continue
            pieces = fit_to_row(s, self.seq_len, self.long_samples)
            if len(pieces[0].input_ids) < len(s.input_ids):
                self._count_long(len(s.input_ids))
            self.buffer.extend((0, p) for p in pieces)

    def _count_long(self, n: int) -> None:
        # A running count at 1, 10, 100, ... long samples: visible without a line per sample.
        self.long_seen += 1
        if str(self.long_seen).strip("0") == "1":
            done = "truncated to their last" if self.long_samples == "truncate_left" else "split into pieces of"
            log.warning(
                "data.long_samples=%s: %d samples longer than data.seq_len %d so far %s %d tokens (latest: %d tokens)",
                self.long_samples,
                self.long_seen,
                self.seq_len,
                done,
                self.seq_len,
                n,
            )

    def _best_fit(self) -> list[list[Sample]]:
        """Assign buffered pieces to rows: waiting ones first, then longest first; best fit."""
        order = sorted(
            range(len(self.buffer)), key=lambda i: (-self.buffer[i][0], -len(self.buffer[i][1].input_ids), i)
        )
        room = [self.seq_len] * self.rows
        bins: list[list[Sample]] = [[] for _ in range(self.rows)]
        left: list[tuple[int, Sample]] = []
        for i in order:
            age, s = self.buffer[i]
            n = len(s.input_ids)
            fits = [r for r in range(self.rows) if room[r] >= n]
            if not fits:
                left.append((age + 1, s))
                continue
            r = min(fits, key=lambda r: (room[r] - n, r))
            room[r] -= n
            bins[r].append(s)
        self.buffer = left
        return bins

    def next_batch(self) -> Batch | None:
        """The next micro-batch, or None when the source is exhausted and the buffer empty."""
        self._fill()
        if not self.buffer:
            return None
        bins = self._best_fit()
        batch = self._tensors(bins)
        self.count += 1
        return batch

    def _tensors(self, bins: list[list[Sample]]) -> Batch:
        B, T = self.rows, self.seq_len
        ids = np.full((B, T), self.pad_id, np.int64)
        tgt = np.full((B, T), -100, np.int64)
        posn = np.zeros((B, T), np.int64)
        doc = np.full((B, T), -1, np.int64)
        sample_ids: list[str] = []
        for r, row in enumerate(bins):
            rng = np.random.default_rng([self.seed, self.count, r])
            at = 0
            for d, s in enumerate(row):
                n = len(s.input_ids)
                ids[r, at : at + n] = s.input_ids
                doc[r, at : at + n] = d
                carry = np.ones(n, bool) if s.loss_mask is None else s.loss_mask.astype(bool)
                if self.doc_mask:
                    # Target of token t is token t+1 of the same document.
                    tgt[r, at : at + n - 1] = np.where(carry[1:], s.input_ids[1:], -100)
                    posn[r, at : at + n] = pos.transform(
                        self.positions, n, self.window or T, s.segments, rng, self.pose_chunks
                    )
                else:
                    tgt[r, at : at + n - 1] = np.where(carry[1:], s.input_ids[1:], -100)
                    if at > 0 and carry[0]:  # the previous document's last token predicts this first one
                        tgt[r, at - 1] = s.input_ids[0]
                if "#" not in s.id:
                    sample_ids.append(s.id)
                at += n
            if not self.doc_mask and at:
                posn[r, :at] = pos.transform(self.positions, at, self.window or T, None, rng, self.pose_chunks)
        return Batch(
            torch.from_numpy(ids), torch.from_numpy(tgt), torch.from_numpy(posn), torch.from_numpy(doc), sample_ids
        )
