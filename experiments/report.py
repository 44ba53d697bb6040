"""The experiment's report: docs/experiments.md (or `--report PATH`) rendered from the results.

Per arm, the seeds' results are reduced to a few numbers (`summary`), shown as mean +- spread
(the sample standard deviation over the seeds; none with one seed). The statement at the end is
computed from the same numbers, never written by hand: an arm "helps" on a metric when its mean
beats the baseline's by more than twice the larger of the two spreads (by any margin when every
seed gave the same number), "hurts" when it trails by as much, and is within the spread
otherwise; a difference under `EQUAL` (the table's last decimal) is none; with one seed there is
no spread and no arm is called better or worse. The needle metric's check (a model trained on the
needle task itself against the untrained base, at lengths up to the training length) is reported
first, since the needle columns mean something only if it passes.

Plots (matplotlib, saved next to the report): needle token accuracy heatmaps, one panel per arm,
side by side; perplexity by position, one line per arm.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from .plan import Plan

# (key, column title, higher is better)
METRICS: list[tuple[str, str, bool]] = [
    ("needle_token", "needle token acc.", True),
    ("needle_within", "needle token acc. <= L", True),
    ("needle_first_within", "needle first token <= L", True),
    ("needle_beyond", "needle token acc. > L", True),
    ("needle_exact", "needle exact", True),
    ("synl_token", "SynL token acc.", True),
    ("synl_exact", "SynL exact", True),
    ("nll_all", "NLL", False),
    ("nll_beyond", "NLL at positions > L", False),
]
# What the statement judges the arms on: the long-context metrics, one of each kind.
JUDGED = ("needle_token", "synl_token", "nll_beyond")
CHECK_ARM, BASE_ARM = "needle_task", "base"
CHECK_PASS = 0.9  # the needle-task model's token accuracy within the training length for the check to pass
EQUAL = 5e-4  # a difference below this is no difference (the table shows three decimals)


def summary(result: dict[str, Any], length: int | None = None) -> dict[str, float]:
    """The scalar metrics of one (arm, seed) result. `length`: the training length L (default:
    the arm's row length, else half the longest needle length)."""
    needle, ppl = result["needle"], result["perplexity"]
    lengths = needle["lengths"]
    L = length or max(lengths) // 2
    tok = np.asarray(needle.get("token_accuracy", needle["accuracy"]))
    first = np.asarray(needle.get("first_token_accuracy", np.full(tok.shape, np.nan)))
    beyond = [i for i, x in enumerate(lengths) if x > L]
    within = [i for i, x in enumerate(lengths) if x <= L]
    edges = np.asarray(ppl["bucket_edges"])
    mids = (edges[:-1] + edges[1:]) / 2
    nll = np.asarray(ppl["nll"])
    late = nll[mids > L] if (mids > L).any() else nll[-1:]
    return {
        "needle_token": float(tok.mean()),
        "needle_within": float(tok[within].mean()) if within else float("nan"),
        "needle_first_within": float(first[within].mean()) if within else float("nan"),
        "needle_beyond": float(tok[beyond].mean()) if beyond else float("nan"),
        "needle_exact": float(np.asarray(needle["accuracy"]).mean()),
        "synl_token": float(result["synl"]["token"]),
        "synl_exact": float(result["synl"]["exact"]),
        "nll_all": float(ppl["nll_all"]),
        "nll_beyond": float(late.mean()),
    }


def score(result: dict[str, Any]) -> float:
    """How the best cip arm is chosen: needle plus SynL token accuracy (held-out, higher better)."""
    return _score(summary(result))


def _score(summary: dict[str, float]) -> float:
    return summary["needle_token"] + summary["synl_token"]


def _mean_sd(values: list[float]) -> tuple[float, float | None]:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return float("nan"), None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def _fmt(mean: float, sd: float | None) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")


def collect(plan: Plan, out: Path) -> dict[str, list[dict[str, Any]]]:
    """The results on disk, per arm (only arms of the plan, only its seeds)."""
    import json

    found: dict[str, list[dict[str, Any]]] = {}
    for arm in plan.arms:
        rs = []
        for seed in plan.seeds:
            p = out / "results" / arm.name / f"seed{seed}.json"
            if p.is_file():
                rs.append(json.loads(p.read_text()))
        found[arm.name] = rs
    return found


def stats(plan: Plan, results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, tuple[float, float | None]]]:
    out = {}
    for name, rs in results.items():
        if rs:
            sums = [summary(r, plan.length) for r in rs]
            out[name] = {k: _mean_sd([s[k] for s in sums]) for k, _, _ in METRICS}
    return out


def _judge(diff: float, spread: float, one_seed: bool) -> str:
    """How an arm compares with the baseline on one metric (`diff` > 0: better)."""
    if abs(diff) < EQUAL:
        return "equal"
    if one_seed:
        return "draw"
    if diff > 2 * spread:
        return "helped"
    if diff < -2 * spread:
        return "hurt"
    return "within"


def statement(plan: Plan, st: dict[str, dict[str, tuple[float, float | None]]]) -> list[str]:
    """Plain sentences computed from the numbers: the metric check, then each arm against the baseline."""
    lines = []
    if CHECK_ARM in st and BASE_ARM in st:
        hi, lo = st[CHECK_ARM]["needle_within"][0], st[BASE_ARM]["needle_within"][0]
        first = st[CHECK_ARM]["needle_first_within"][0]
        ok = hi >= CHECK_PASS and hi - lo >= 0.5
        lines.append(
            f"Needle metric check: at lengths up to the training length, the model trained on the needle task "
            f"scores {hi:.3f} (token accuracy; {first:.3f} on the first answer token), the untrained base {lo:.3f}. "
            + (
                "The metric separates a model that retrieves from one that does not."
                if ok
                else f"The check does not pass (it needs {CHECK_PASS} or more against a base well below): even a "
                "model trained on the task itself does not retrieve at this scale, so the needle columns cannot "
                "tell the arms apart."
            )
        )
    base = st.get(plan.baseline)
    if base is None:
        lines.append(f"The baseline arm ({plan.baseline}) has no result: no comparison is made.")
        return lines
    one_seed = len(plan.seeds) < 2
    if one_seed:
        lines.append(
            "One seed per arm: there is no spread, so no arm is called better or worse than the baseline; the "
            "differences below are single draws."
        )
    found: dict[str, list[str]] = {"helped": [], "hurt": [], "within": [], "draw": [], "equal": []}
    verdicts: dict[str, dict[str, list[str]]] = {}  # arm -> verdict -> metric titles
    for arm in plan.arms:
        if arm.name in (plan.baseline, CHECK_ARM, BASE_ARM) or arm.name not in st:
            continue
        for key, title, higher in METRICS:
            if key not in JUDGED:
                continue
            (m, sd), (bm, bsd) = st[arm.name][key], base[key]
            if math.isnan(m) or math.isnan(bm):
                continue
            diff = (m - bm) if higher else (bm - m)  # > 0: better than the baseline
            spread = max(sd or 0.0, bsd or 0.0)
            verdict = _judge(diff, spread, one_seed)
            verdicts.setdefault(arm.name, {}).setdefault(verdict, []).append(title)
            text = f"{arm.name} on {title}" if verdict == "equal" else f"{arm.name} on {title} ({m:.3f} vs {bm:.3f}"
            if verdict in ("helped", "hurt"):
                text += (
                    f", {abs(diff) / spread:.1f} spreads {'better' if diff > 0 else 'worse'})"
                    if spread
                    else ", every seed alike)"
                )
            elif verdict != "equal":
                text += ")"
            found[verdict].append(text)
    if not one_seed:
        lines += _reading(plan, st, verdicts)
    heads = {
        "helped": "Beats the baseline by more than 2 spreads",
        "hurt": "Trails the baseline by more than 2 spreads",
        "within": "Within twice the spread of the baseline",
        "draw": "Differences from the baseline (single draws)",
        "equal": f"Equal to the baseline to {EQUAL:g}",
    }
    for verdict, head in heads.items():
        if found[verdict]:
            lines.append(_sentence(f"{head}: " + "; ".join(found[verdict])))
    return lines


def _verb(subjects: list[str], verb: str) -> str:
    return verb + "s" if len(subjects) == 1 else verb


def _sentence(text: str) -> str:
    return text if text.endswith(".") else text + "."


def _reading(
    plan: Plan, st: dict[str, dict[str, tuple[float, float | None]]], verdicts: dict[str, dict[str, list[str]]]
) -> list[str]:
    """What the verdicts say per group: the data arms of continued pretraining, then long SFT."""

    def listed(names: list[str], verdict: str) -> str:
        return "; ".join(f"{n} ({', '.join(verdicts[n][verdict])})" for n in names)

    def line(head: str, names: list[str], beaten: str, none: str) -> tuple[str, bool]:
        helped = [n for n in names if verdicts[n].get("helped")]
        hurt = [n for n in names if verdicts[n].get("hurt")]
        text = head + (f"{listed(helped, 'helped')} {_verb(helped, 'beat')} {beaten}" if helped else none)
        text += f"; {listed(hurt, 'hurt')} {_verb(hurt, 'trail')} it" if hurt else ""
        return text, bool(helped)

    out = []
    cip = [a.name for a in plan.arms if a.group == "cip" and a.name != plan.baseline and a.name in verdicts]
    if cip:
        text, helped = line(
            f"Continued pretraining, against {plan.baseline}: ", cip, "it", "no arm beats it beyond twice the spread"
        )
        if not helped:
            text += ". At this scale these data and RoPE choices do not separate from plain concatenation"
        out.append(_sentence(text))
    sft = [a.name for a in plan.arms if a.group == "sft" and a.name in verdicts]
    if sft:
        means = {
            a.name: {k: v[0] for k, v in st[a.name].items()} for a in plan.arms if a.group == "cip" and a.name in st
        }
        best = max(means, key=lambda n: _score(means[n])) if means else None
        start = f" from {best} (the best cip arm)" if best else ""
        out.append(_sentence(line(f"Long SFT{start}: ", sft, plan.baseline, "no arm beats the baseline")[0]))
    return out


def plots(plan: Plan, results: dict[str, list[dict[str, Any]]], folder: Path, stem: str) -> list[str]:
    """The heatmaps and the perplexity lines as PNG files in `folder`; their names (none without matplotlib)."""
    try:
        import matplotlib
    except ImportError:
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [a.name for a in plan.arms if results.get(a.name)]
    if not arms:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    first = results[arms[0]][0]["needle"]
    lengths, depths = first["lengths"], first["depths"]
    cols = min(4, len(arms))
    rows = math.ceil(len(arms) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, arms):
        acc = np.mean(
            [np.asarray(r["needle"].get("token_accuracy", r["needle"]["accuracy"])) for r in results[name]], 0
        )
        ax.imshow(acc.T, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
        ax.set_title(name, fontsize=9)
        ax.set_xticks(range(len(lengths)), [str(x) for x in lengths], fontsize=7, rotation=45)
        ax.set_yticks(range(len(depths)), [f"{d:.0%}" for d in depths], fontsize=7)
        for (i, j), v in np.ndenumerate(acc):
            ax.text(i, j, f"{v:.2f}", ha="center", va="center", fontsize=6)
    for ax in list(axes.flat)[len(arms) :]:
        ax.axis("off")
    fig.suptitle("needle token accuracy (x: context length, y: depth)", fontsize=10)
    fig.tight_layout()
    names.append(f"{stem}-needles.png")
    fig.savefig(folder / names[-1], dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    cmap = plt.get_cmap("tab20")  # one color per arm: the default cycle repeats after ten
    colors = [cmap(i) for i in range(20)]
    for k, name in enumerate(arms):
        ppl = results[name][0]["perplexity"]
        edges = np.asarray(ppl["bucket_edges"])
        nll = np.mean([r["perplexity"]["nll"] for r in results[name]], 0)
        color, ls = colors[(2 * k) % 20 + (2 * k) // 20], "-" if k < 10 else "--"
        ax.plot((edges[:-1] + edges[1:]) / 2, nll, marker="o", label=name, color=color, ls=ls)
    ax.axvline(plan.length, color="grey", ls="--", lw=1)
    ax.set_xlabel("position (tokens); dashed: training length")
    ax.set_ylabel("held-out NLL (nats/token)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    names.append(f"{stem}-perplexity.png")
    fig.savefig(folder / names[-1], dpi=90)
    plt.close(fig)
    return names


def render(plan: Plan, out: Path, report: Path, *, command: str, run: dict[str, Any]) -> Path:
    """Write the report to `report` (plots beside it); returns its path."""
    import json
    import os
    import platform

    results = collect(plan, out)
    log = out / "invocations.jsonl"
    calls = [json.loads(x) for x in log.read_text().splitlines() if x.strip()] if log.is_file() else [run]
    total = sum(float(c.get("wall_s", 0)) for c in calls)
    st = stats(plan, results)
    report.parent.mkdir(parents=True, exist_ok=True)
    pngs = plots(plan, results, report.parent, report.stem)
    lines = [
        f"# Experiment: {plan.name}",
        "",
        "Does the data teach long context? A tiny Llama pretrained at a short length, continued at "
        f"{plan.length} tokens under each arm with an equal token budget, scored on held-out data "
        "(documents and SynL tables no arm trained on). Generated by `longweave experiment` from the "
        "results; do not edit by hand.",
        "",
        "## Command and cost",
        "",
        "```",
        command,
        "```",
        "",
        f"Wall time: {total:.0f} s over {len(calls)} invocation(s); the last one {run.get('wall_s', 0):.0f} s "
        f"({run.get('ran', 0)} jobs run, {run.get('reused', 0)} reused) on {os.cpu_count()} CPU cores "
        f"({platform.processor() or platform.machine()}). Seeds: {', '.join(map(str, plan.seeds))}. "
        f"Base: {plan.base.tokens:,} tokens at {plan.base.seq_len}; arms: {plan.arm_tokens:,} tokens "
        f"(SFT arms {plan.sft_tokens:,}, the needle-task check {plan.check_tokens:,}).",
        "",
        "On GPUs, with a real base model: the same command with `--model PATH --length 32768 --gpus N` "
        "(the base is then PATH, training runs under torchrun, the needle grid reaches 2 x the length).",
        "",
        "## Results",
        "",
        "Mean ± sample standard deviation over the seeds. Needle: teacher-forced, the share of answer "
        "tokens that are the argmax (token), of trials whose first answer token is (first token: the one "
        "found by matching the question; the rest are copied after it) or of trials with every answer "
        "token right (exact), over "
        f"lengths {', '.join(map(str, plan.eval_lengths()))} and depths "
        f"{', '.join(f'{d:g}' for d in plan.eval.depths)}; > L: lengths beyond the training length. SynL: "
        "the same on held-out tables' answers. NLL: held-out long documents, per token; > L: positions "
        "beyond the training length (lower is better).",
        "",
        "| arm | group | seeds | " + " | ".join(t for _, t, _ in METRICS) + " |",
        "|---|---|---:|" + "---:|" * len(METRICS),
    ]
    for arm in plan.arms:
        n = len(results.get(arm.name, []))
        cells = [_fmt(*st[arm.name][k]) if arm.name in st else "missing" for k, _, _ in METRICS]
        lines.append(f"| {arm.name} | {arm.group} | {n} | " + " | ".join(cells) + " |")
    lines += ["", "What each arm is:", ""]
    lines += [f"- `{a.name}`: {a.about or a.group}" for a in plan.arms]
    if run.get("failed"):
        lines += ["", "Failed jobs (see jobs/*.log): " + ", ".join(run["failed"]) + "."]
    lines += ["", "## What it says", ""]
    lines += [f"- {x}" for x in statement(plan, st)]  # one point per line: Markdown joins bare lines
    if pngs:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in pngs]
    report.write_text("\n".join(lines) + "\n")
    return report
