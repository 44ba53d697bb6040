"""A tokenized corpus on disk: one flat token array plus document offsets, memory-mapped.

CIP and the needle haystacks cut token ranges out of documents millions of times; doing that on
text would mean re-tokenizing constantly. So a corpus is tokenized once per (corpus, tokenizer)
into `tokens.bin` (int32, all documents back to back, no special tokens), `offsets.npy`
(int64, n_docs + 1) and `ids.json`, cached under a hash of both. The build streams: documents are
encoded in batches by the tokenizer's parallel Rust backend and appended to the file, so a corpus
bigger than memory is fine. Reads are numpy slices of a memmap: no copies until a sequence is cut.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .corpus import Corpus
from .tokenizer import Tokenizer


@dataclass
class TokenStore:
    tokens: np.ndarray  # int32 memmap, every document back to back
    offsets: np.ndarray  # int64, document i is tokens[offsets[i]:offsets[i+1]]
    ids: list[str]
    path: Path

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    def doc(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    @classmethod
    def load(cls, path: Path) -> TokenStore:
        offsets = np.load(path / "offsets.npy")
        n = int(offsets[-1])
        tokens = np.memmap(path / "tokens.bin", dtype=np.int32, mode="r", shape=(n,)) if n else np.zeros(0, np.int32)
        ids = json.loads((path / "ids.json").read_text())
        return cls(tokens, offsets, ids, path)

    @classmethod
    def build(cls, corpus: Corpus, tokenizer: Tokenizer, cache_dir: str | Path, batch_size: int = 256) -> TokenStore:
        """Tokenize `corpus` with `tokenizer`, or load the cached result of doing so."""
        cache = Path(cache_dir)
        key = hashlib.sha256(json.dumps(["tokens-v1", corpus.fingerprint(), tokenizer.sha256]).encode()).hexdigest()[
            :16
        ]
        out = cache / "tokens" / key
        if (out / "ids.json").is_file():
            return cls.load(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".tmp-"))
        lengths: list[int] = []
        ids: list[str] = []
        with open(tmp / "tokens.bin", "wb") as f:
            for batch in corpus.iter_batches(batch_size):
                encoded = tokenizer.encode_batch([d.text for d in batch])
                for doc, arr in zip(batch, encoded):
                    f.write(arr.astype(np.int32, copy=False).tobytes())
                    lengths.append(len(arr))
                    ids.append(doc.id)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        np.save(tmp / "offsets.npy", offsets)
        (tmp / "ids.json").write_text(json.dumps(ids))
        try:
            tmp.rename(out)
        except OSError:  # a concurrent build finished first; the results are identical
            shutil.rmtree(tmp, ignore_errors=True)
        return cls.load(out)
