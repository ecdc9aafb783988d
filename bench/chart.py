"""bench/results.png from the figures in bench/results.json (matplotlib, no display needed)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"direct": "#9e9e9e", "sqlite": "#4c72b0", "postgres": "#dd8452"}
TARGET = {"color": "#c44e52", "linestyle": "--", "linewidth": 1.2}


def draw(results: dict, path: Path) -> None:
    backends = {b: f for b, f in results["backends"].items() if "skipped" not in f}
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    meta = results["meta"]
    fig.suptitle(
        f"Tollgate benchmark — {meta['when']}, commit {meta['commit']}, {meta['cpus']} CPUs, load by wrk / httpx",
        fontsize=12,
    )
    _added_latency(axes[0][0], results["direct"], backends)
    _throughput(axes[0][1], results["direct"], backends, meta["connections"])
    _streaming(axes[1][0], results["direct"], backends)
    _open_streams(axes[1][1], results.get("open_streams") or {})
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _bars(ax, groups: list[str], series: dict[str, list[float]]) -> None:
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        bars = ax.bar(xs, values, width, label=name, color=COLOURS.get(name))
        ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    ax.set_xticks(range(len(groups)), groups)


def _added_latency(ax, direct: dict, backends: dict) -> None:
    groups = ["p50", "p99"]
    series = {b: [f["added_ms"]["c1"]["p50"], f["added_ms"]["c1"]["p99"]] for b, f in backends.items()}
    _bars(ax, groups, series)
    ax.hlines([2, 10], [-0.45, 0.55], [0.45, 1.45], **TARGET, label="target: p50 ≤ 2 ms, p99 ≤ 10 ms")
    ax.axhline(0, color="#333", linewidth=0.8)
    ax.set_title("1. Added latency at 1 connection: Tollgate minus direct")
    ax.set_ylabel("ms")
    ax.legend(fontsize=8, loc="upper left")


def _throughput(ax, direct: dict, backends: dict, connections: int) -> None:
    names = ["direct"] + list(backends)
    runs = [direct["c32"]] + [f["c32"] for f in backends.values()]
    bars = ax.bar(names, [r["ok_rate"] for r in runs], color=[COLOURS.get(n) for n in names])
    labels = [
        f"{r['ok_rate']:.0f}/s\np50 {r['p50_ms']:.1f} ms\np99 {r['p99_ms']:.1f} ms\n{r['errors']} errors" for r in runs
    ]
    ax.bar_label(bars, labels=labels, fontsize=8, padding=2)
    ax.axhline(1000, **TARGET, label="target (PostgreSQL): 1,000/s")
    ax.set_yscale("log")
    ax.set_ylim(top=max(r["ok_rate"] for r in runs) * 20)
    ax.set_title(f"2. Admitted requests per second, {connections} connections")
    ax.set_ylabel("200 answers / s (log)")
    ax.legend(fontsize=8, loc="upper right")


def _streaming(ax, direct: dict, backends: dict) -> None:
    groups = ["first byte p50", "first byte p99", "chunk transit p50", "chunk transit p99"]

    def row(figures: dict) -> list[float]:
        s = figures["stream"]
        return [s["first_byte_ms"]["p50"], s["first_byte_ms"]["p99"], s["transit_ms"]["p50"], s["transit_ms"]["p99"]]

    series = {"direct": row(direct)} | {b: row(f) for b, f in backends.items()}
    _bars(ax, groups, series)
    gap = direct["stream"]["gap_ms"]["upstream"]
    ax.axhline(gap / 2, color="#8172b2", linestyle=":", linewidth=1.2, label=f"held back above {gap / 2:g} ms")
    held = "; ".join(
        f"{b}: first byte +{f['first_byte_overhead_ms']['p50']:.1f} ms, {f['stream']['held_back']} chunks held back"
        for b, f in backends.items()
    )
    ax.set_title("3. Streaming, one at a time (target: first byte ≤ direct + 5 ms)")
    ax.set_xlabel(held, fontsize=8)
    ax.set_ylabel("ms")
    ax.legend(fontsize=8, loc="upper left")


def _open_streams(ax, open_streams: dict) -> None:
    ax.set_title("4. Concurrent slow streams through one worker")
    runs = {b: o for b, o in open_streams.items() if "skipped" not in o}
    if not runs:
        ax.text(0.5, 0.5, "not run", ha="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    peak = 0.0
    notes = []
    for backend, o in runs.items():
        colour = COLOURS.get(backend, "#333")
        times, rss = [t for t, _ in o["rss_samples"]], [mb for _, mb in o["rss_samples"]]
        ax.plot(times, rss, color=colour, label=f"{backend}: worker RSS")
        ax.axvline(o["last_finished_s"], color=colour, linestyle=":", linewidth=1, label=f"{backend}: last stream done")
        peak = max(peak, *rss)
        notes.append(
            f"{backend}: {o['streams']} streams, {o['errors']} errors, {o['peak_open']} open at once, "
            f"peak {o['rss_peak_mb']} MB"
        )
    ax.axhline(300, **TARGET, label="target: 300 MB")
    ax.set_xlabel("seconds since the streams were opened")
    ax.set_ylabel("MB")
    ax.set_ylim(0, max(320, peak * 1.1))
    ax.text(0.02, 0.04, "\n".join(notes), transform=ax.transAxes, fontsize=8)
    ax.legend(fontsize=7, loc="upper right")
