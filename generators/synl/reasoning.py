"""SynL reasoning answers written by a language model, kept only when their final answer is right.

The model gets the sample's own chat (system prompt and the user message with the tables and the
question, whose instruction already asks for the rows used and a last line `Answer: ...`) and
writes the steps. `check_reasoning_reply` keeps the reply only when its last line is `Answer: X`
and X equals the answer `evaluate` computed, compared with whitespace normalised (answers listing
keys compare as lists, in order, however the commas are spaced: every list template states an
order). The kept reply ends in the canonical `Answer: <computed answer>` line. Anything else is
refused with a reason counted as `reasoning:<reason>` and the template reasoning stays.
"""

from __future__ import annotations

from dataclasses import dataclass

STEP = "reasoning"
MAX_CHARS = 20_000  # a reply longer than this is not a reasoning answer to a table question


@dataclass
class ReasoningVerdict:
    ok: bool
    reason: str = ""
    text: str = ""  # the reply to train on (its last line canonical) when ok


def _norm(text: str) -> str:
    return " ".join(text.split())


def same_answer(given: str, answer: str, answer_format: str) -> bool:
    if answer_format == "keys":
        return [_norm(p) for p in given.split(",")] == [_norm(p) for p in answer.split(",")]
    return _norm(given) == _norm(answer)


def check_reasoning_reply(reply: str, answer: str, answer_format: str) -> ReasoningVerdict:
    """Validate one model-written reasoning answer against the computed `answer`."""
    if "<|" in reply or len(reply) > MAX_CHARS:
        return ReasoningVerdict(False, "malformed")
    lines = [line.rstrip() for line in reply.strip().replace("\r\n", "\n").split("\n")]
    if not lines or not lines[-1].startswith("Answer:"):
        return ReasoningVerdict(False, "no_answer")
    steps = [line for line in lines[:-1] if line.strip()]
    if not steps:
        return ReasoningVerdict(False, "no_steps")
    if not same_answer(lines[-1][len("Answer:") :], answer, answer_format):
        return ReasoningVerdict(False, "wrong_answer")
    return ReasoningVerdict(True, text="\n".join([*lines[:-1], f"Answer: {answer}"]))


__all__ = ["ReasoningVerdict", "check_reasoning_reply", "same_answer"]
