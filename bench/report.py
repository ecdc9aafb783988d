"""The bench's report: the table that it prints, and bench/results.png (matplotlib), from run.py's results.

Targets are the README's; where SQLite's and PostgreSQL's differ they read `SQLite|PostgreSQL`.
"""

import math
from pathlib import Path

COLUMNS = {
    "direct": "stand-in",
    "sqlite": "SQLite",
    "postgres": "PostgreSQL",
    "litellm": "LiteLLM",
    "portkey": "Portkey",
}
COLOURS = {
    "stand-in": "#9e9e9e",
    "SQLite": "#4c72b0",
    "PostgreSQL": "#dd8452",
    "LiteLLM": "#8172b2",
    "Portkey": "#55a868",
}
PEERS = ("litellm", "portkey")


def measured(results: dict) -> dict[str, dict]:
    return {name: results[name] for name in COLUMNS if "skipped" not in results.get(name, {"skipped": ""})}


def ratio(numerator: float, denominator: float) -> str:
    """n/a where a figure is below zero or nothing: an added latency lost in the noise."""
    return f"{numerator / denominator:.1f}x" if numerator >= 0 and denominator > 0 else "n/a"


def table(results: dict) -> list[str]:
    meta, runs = results["meta"], measured(results)
    direct, tollgate = results["direct"], ("sqlite", "postgres")
    proxies = (*tollgate, *PEERS)
    rows = [["", "target", *(COLUMNS[name] for name in runs)]]

    def row(label: str, target: str, cell, among=tuple(COLUMNS)) -> None:
        values = []
        for name, figures in runs.items():
            try:
                values.append(str(cell(figures)) if name in among else "")
            except (KeyError, TypeError, ZeroDivisionError):  # not measured there
                values.append("")
        rows.append([label, target, *values])

    def latency(run: str):
        return lambda f: f"{f[run]['p50']:.2f} / {f[run]['p99']:.2f}"

    def added_ms(f: dict, run: str, p: str) -> float:
        return f[run][p] - direct[run][p]

    def added(run: str):
        return lambda f: f"{added_ms(f, run, 'p50'):.2f} / {added_ms(f, run, 'p99'):.2f}"

    def added_in(f: dict, kind: str) -> str:
        return " / ".join(f"{f[kind]['c1'][p] - direct[kind]['c1'][p]:.2f}" for p in ("p50", "p99"))

    def first_byte_added(f: dict) -> str:
        return f"{f['stream']['first_byte']['p50'] - direct['stream']['first_byte']['p50']:.1f}"

    def exact(f: dict) -> str:
        return "{admitted} / {stored} / {sent}".format(**f["exact"]) + ("" if f["exact"]["exact"] else " NOT EXACT")

    def added_over(peer: dict):
        return lambda f: " / ".join(ratio(added_ms(peer, "c1", p), added_ms(f, "c1", p)) for p in ("p50", "p99"))

    def stolen(f: dict) -> str:
        shares = f"{f['c1']['stolen']:.0%} / {f['c32']['stolen']:.0%}"
        attempts = (f["c1"].get("attempts", 1), f["c32"].get("attempts", 1))
        return shares + (" (taken {} / {} times)".format(*attempts) if max(attempts) > 1 else "")

    conns, quota = meta["connections"], meta["quota"]
    row("1 connection: latency p50 / p99, ms", "", latency("c1"))
    row("  added by the proxy", "≤ 1.5|2.5 / 10", added("c1"), among=proxies)
    row(f"{conns} connections: admitted (200) a second", "≥ 1,600|1,000", lambda f: f"{f['c32']['ok_per_s']:,.0f}")
    row("  errors (any other answer)", "0", lambda f: f["c32"]["errors"])
    row("  latency p50 / p99, ms", "", latency("c32"))
    row("  added by the proxy", "", added("c32"), among=proxies)
    row("  CPU ms per request (direct: the stand-in's)", "", lambda f: f"{f['cpu_ms']:.2f}")
    row("  the stand-in alone just before, a second", "", lambda f: f"{f['c32']['standin_then']:,.0f}", among=proxies)
    row("CPU stolen by other machines, 1 / 32 connections", "≤ 10%", stolen)

    def budget_cost(f: dict) -> str:
        p50 = f["budgeted"]["c1"]["p50"] - f["c1"]["p50"]
        return f"{p50:+.2f} ms; {f['budgeted']['c32']['ok_per_s'] / f['c32']['ok_per_s']:.0%}"

    row("money budget on: p50 added vs none; admitted/s kept", "≤ 0.3 ms; ≥ 85%", budget_cost, among=tollgate)
    for kind, label in (("streamed", "streamed answer, 5 chunks"), ("embeddings", "embeddings, 2 inputs")):
        row(f"{label}: added p50 / p99 at 1 connection, ms", "", lambda f, k=kind: added_in(f, k), among=proxies)
        row(f"  {conns} connections: admitted a second", "", lambda f, k=kind: f"{f[k]['c32']['ok_per_s']:,.0f}")
        row("  CPU ms per request", "", lambda f, k=kind: f"{f[k]['cpu_ms']:.2f}")
    row("stream: first byte p50 / p99, ms", "", lambda f: "{p50:.1f} / {p99:.1f}".format(**f["stream"]["first_byte"]))
    row("  first byte added, p50", "≤ 5", first_byte_added, among=proxies)
    row(
        "  chunk transit p50 / p99 / max, ms",
        "",
        lambda f: "{p50:.1f} / {p99:.1f} / {max:.1f}".format(**f["stream"]["transit"]),
    )
    row("  chunks held back", "0", lambda f: f"{f['stream']['held_back']} of {f['stream']['chunks']}")
    row("  failed streams", "0", lambda f: f["stream"]["errors"])
    row("slow streams at once, one worker: failed", "0", lambda f: f"{f['open']['errors']} of {f['open']['streams']}")
    row("  open at once; all done after, s", "", lambda f: f"{f['open']['open_at_once']}; {f['open']['seconds']:.1f}")
    row(
        "  worker memory before / peak, MB",
        "< 300",
        lambda f: "{rss_before_mb:.0f} / {rss_peak_mb:.0f}".format(**f["open"]),
    )
    row(f"exactness, quota {quota}: admitted / usage / sent", f"{quota} / {quota}", exact)
    row(
        "bad-key flood: admitted/s kept",
        "≥ 80%",
        lambda f: f"{f['flood']['valid_ok_per_s'] / f['c32']['ok_per_s']:.0%}",
    )
    row("  bad keys answered", "", lambda f: f["flood"]["bad_sent"])
    for name in (name for name in PEERS if name in runs):
        peer, title = runs[name], COLUMNS[name]
        row(f"{title}'s added p50 / p99 over Tollgate's", "", added_over(peer), among=tollgate)
        row(f"Tollgate's admitted/s over {title}'s", "",
            lambda f, peer=peer: ratio(f["c32"]["ok_per_s"], peer["c32"]["ok_per_s"]), among=tollgate)  # fmt: skip

    widths = [max(len(cells[i]) for cells in rows) for i in range(len(rows[0]))]
    lines = [
        f"Tollgate benchmark, {meta['when']}, commit {meta['commit']}; {meta['machine']}",
        f"load average {meta['load_before']} before, {meta['load_after']} after; took {meta['minutes']:.0f} min",
        "POST /v1/chat/completions; 'added' = the same run through the proxy minus straight to the stand-in",
        "",
    ]
    for label, *figures in rows:  # the labels to the left, the figures to the right
        cells = [label.ljust(widths[0])] + [c.rjust(w) for c, w in zip(figures, widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    for name in COLUMNS:
        figures = results.get(name, {})
        if "skipped" in figures:
            lines.append(f"{name}: skipped ({figures['skipped']})")
        for kind in ("stream", "open"):
            if figures.get(kind, {}).get("errors"):
                lines.append(f"{name}: failed streams, e.g. {figures[kind]['error_examples']}")
    return lines


def draw(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta, direct = results["meta"], results["direct"]
    proxies = {COLUMNS[name]: f for name, f in measured(results).items() if name != "direct"}
    fig, (latency, throughput, memory) = plt.subplots(1, 3, figsize=(16, 5.5))
    fig.suptitle(f"Tollgate benchmark, {meta['when']}, commit {meta['commit']}; {meta['machine']}", fontsize=11)

    groups = ["p50", "p99", "stream's first byte, p50"]
    width = 0.8 / max(len(proxies), 1)
    for i, (name, f) in enumerate(proxies.items()):
        values = [f["c1"]["p50"] - direct["c1"]["p50"], f["c1"]["p99"] - direct["c1"]["p99"], math.nan]
        if "stream" in f:
            values[2] = f["stream"]["first_byte"]["p50"] - direct["stream"]["first_byte"]["p50"]
        xs = [g + (i - (len(proxies) - 1) / 2) * width for g in range(len(groups))]
        bars = latency.bar(xs, values, width, label=name, color=COLOURS[name])
        latency.bar_label(bars, labels=["" if math.isnan(v) else f"{v:.1f}" for v in values], fontsize=8)
    latency.set_xticks(range(len(groups)), groups)
    latency.set_yscale("symlog", linthresh=10)  # a peer's added latency may be a hundred times Tollgate's
    latency.yaxis.set_major_formatter("{x:,.0f}")
    highest = max((bar.get_height() for bar in latency.patches if not math.isnan(bar.get_height())), default=10)
    latency.set_ylim(-2, max(highest, 10) * 2)  # below zero: lost in the noise
    latency.set(title="Latency added in front of the model, 1 connection", ylabel="ms (log above 10)")
    latency.legend(fontsize=8)

    names = ["stand-in", *proxies]
    rates = [direct["c32"]["ok_per_s"], *(f["c32"]["ok_per_s"] for f in proxies.values())]
    bars = throughput.bar(names, rates, color=[COLOURS[name] for name in names])
    throughput.bar_label(bars, labels=[f"{rate:,.0f}/s" for rate in rates], fontsize=8)
    throughput.set_yscale("log")
    throughput.yaxis.set_major_formatter("{x:,.0f}")
    throughput.yaxis.set_minor_formatter("")
    throughput.set(title=f"Admitted requests a second, {meta['connections']} connections", ylabel="200s/s (log)")

    opened = {name: f["open"] for name, f in proxies.items() if "open" in f}
    bars = memory.bar(list(opened), [o["rss_peak_mb"] for o in opened.values()], color=[COLOURS[n] for n in opened])
    memory.bar_label(bars, labels=[f"{o['rss_peak_mb']:.0f} MB, {o['errors']} failed" for o in opened.values()])
    memory.axhline(300, color="#c44e52", linestyle="--", label="target: 300 MB")
    streams = max((o["streams"] for o in opened.values()), default=0)
    memory.set(title=f"{streams:,} slow streams at once, one worker", ylabel="peak memory, MB", ylim=(0, 330))
    memory.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
