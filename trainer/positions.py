"""Position-index transforms: let a short training row teach a long window.

A model learns what large relative distances mean only by seeing them. Instead of training on
rows as long as the target window, these transforms keep the row short and give its tokens
position ids spread over the whole window, so the attention sees long distances at a fraction of
the cost:

- PoSE (skip-wise training): cut the row into a few chunks; each chunk keeps contiguous positions
  and the chunks are shifted by random, non-decreasing skips, so the last position stays below
  the window.
- LongRecipe's position index transformation: cut the row into its natural pieces (sentences, CIP
  chunks, table blocks: the record's `segments`), keep positions contiguous within a piece, and put
  random gaps between pieces whose total spreads the row over the window. LongRecipe trains at 30%
  of the target window this way.

Both return strictly increasing int64 arrays of the row's length with every value below `window`;
the gaps are drawn afresh for every row (the caller's generator), as both papers resample them.
"""

from __future__ import annotations

import numpy as np


def _spread(starts: np.ndarray, n: int, window: int, rng: np.random.Generator, first_at_zero: bool) -> np.ndarray:
    """Positions of n tokens cut into pieces at `starts` (first is 0), shifted by sorted random skips.

    The skips are sorted draws from [0, window - n], so they never decrease from one piece to the
    next (positions stay increasing, pieces stay contiguous) and the last position is at most
    n - 1 + (window - n) = window - 1.
    """
    budget = window - n
    if budget < 0:
        raise ValueError(f"a row of {n} tokens does not fit a window of {window}")
    k = len(starts)
    skips = np.sort(rng.integers(0, budget + 1, size=k))
    if first_at_zero:
        skips[0] = 0
    lengths = np.diff(np.append(starts, n))
    return np.arange(n, dtype=np.int64) + np.repeat(skips, lengths)


def pose(n: int, window: int, chunks: int, rng: np.random.Generator) -> np.ndarray:
    """PoSE: `chunks` contiguous pieces at random cut points, shifted by random skips."""
    chunks = max(1, min(chunks, n))
    cuts = np.sort(rng.choice(np.arange(1, n), size=chunks - 1, replace=False)) if chunks > 1 else np.zeros(0, int)
    starts = np.concatenate([[0], cuts]).astype(np.int64)
    return _spread(starts, n, window, rng, first_at_zero=False)


def piece_starts(n: int, segments: np.ndarray | None, rng: np.random.Generator, mean_piece: int = 88) -> np.ndarray:
    """Start offsets of the row's pieces: its recorded segments, else random pieces of ~`mean_piece`.

    88 tokens is the mean contiguous-segment length LongRecipe reports for its sentence split.
    """
    if segments is not None and len(segments) > 1:
        s = np.unique(np.asarray(segments, np.int64))
        s = s[(s > 0) & (s < n)]
        return np.concatenate([[0], s]).astype(np.int64)
    lengths = rng.geometric(1.0 / mean_piece, size=n // max(1, mean_piece // 4) + 1)
    starts = np.cumsum(np.concatenate([[0], lengths]))
    return starts[starts < n].astype(np.int64)


def longrecipe(n: int, window: int, segments: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """LongRecipe: pieces keep contiguous positions; random gaps spread the row over `window`."""
    return _spread(piece_starts(n, segments, rng), n, window, rng, first_at_zero=True)


def transform(
    kind: str, n: int, window: int, segments: np.ndarray | None, rng: np.random.Generator, pose_chunks: int = 2
) -> np.ndarray:
    if kind == "none":
        return np.arange(n, dtype=np.int64)
    if kind == "pose":
        return pose(n, window, pose_chunks, rng)
    if kind == "longrecipe":
        return longrecipe(n, window, segments, rng)
    raise ValueError(f"unknown position transform '{kind}'")
