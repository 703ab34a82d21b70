"""`bench/remote.py`'s report: the table, the goals, the chart, and the README section.

Everything here reads `remote.json` only, so `python bench/remote.py --render-only`
redraws the table and chart after a fresh run and rewrites the marked sections of
README.md and docs/performance.md.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from peers import fmt

ROOT = Path(__file__).resolve().parent.parent.parent
BEGIN = "<!-- bench/remote.py: begin (python bench/remote.py --render-only rewrites this) -->"
END = "<!-- bench/remote.py: end -->"
DOCS = {ROOT / "README.md": "bench/results/remote.png",
        ROOT / "docs" / "performance.md": "../bench/results/remote.png"}  # fmt: skip
HTTP = "taskservice HTTP"
"""The label of the HTTP rows (`durable`), and the start of every other HTTP row's."""
DRAMATIQ = "Dramatiq + Redis"
P50_GOAL_MS = 2.0
CPU_NOTE = (
    "Milliseconds of CPU per task, summed over every process of the run: the bench and its "
    "client processes, the server or workers (and their children), and Redis for the peers. "
    "Median of the runs."
)


def describe(cell: dict[str, Any]) -> str:
    """One line of progress for a measured cell."""
    return (
        f"{cell['submit_per_s']:>7,.0f} submissions/s  {cell['done_per_s']:>7,.0f} done/s  "
        f"p50 {cell['p50_ms']:.2f} ms  p99 {cell['p99_ms']:.2f} ms  "
        f"CPU {cell.get('cpu_ms_per_task', float('nan')):.2f} ms/task  "
        f"({cell['tasks']} tasks, {cell['seconds']:.1f} s)"
    )


def _median(row: dict[str, Any], metric: str) -> float | None:
    figure = row.get(metric)
    return None if figure is None else float(figure["median"])


def _cell(row: dict[str, Any], metric: str) -> str:
    value = _median(row, metric)
    if value is None:
        return "failed" if "error" in row else "-"
    return fmt(value)


def table(payload: dict[str, Any]) -> list[str]:
    """Rows: system x client count; columns per kind: submissions/s, run->done tasks/s,
    submission p50 / p99 ms (medians of the runs)."""
    kinds: list[str] = payload["meta"]["args"]["kinds"]
    header = ["system", "clients"]
    for kind in kinds:
        header += [f"{kind} submit/s", f"{kind} run→done/s", f"{kind} submit p50 / p99 ms"]
    lines = ["| " + " | ".join(header) + " |", "|---|---:" + "|---:" * (3 * len(kinds)) + "|"]
    for system, per_kind in payload["results"].items():
        for clients in payload["meta"]["args"]["clients"]:
            cells = [system, str(clients)]
            for kind in kinds:
                row = per_kind[kind][str(clients)]
                cells += [_cell(row, "submit_per_s"), _cell(row, "done_per_s"),
                          f"{_cell(row, 'p50_ms')} / {_cell(row, 'p99_ms')}"]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def cpu_table(payload: dict[str, Any]) -> list[str]:
    """CPU per task (ms) of every process of the system and its clients: less moved by
    the machine's other load than the rates."""
    kinds: list[str] = payload["meta"]["args"]["kinds"]
    clients: list[int] = payload["meta"]["args"]["clients"]
    header = ["system"] + [f"{kind}, {n} clients" for kind in kinds for n in clients]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for system, per_kind in payload["results"].items():
        cells = [system]
        cells += [
            _cell(per_kind[kind][str(n)], "cpu_ms_per_task") for kind in kinds for n in clients
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def goals(payload: dict[str, Any]) -> list[str]:
    """The two goals, met or not, from the figures, for every taskservice HTTP row
    (`durable`, and `batched`, the comparison with a Redis that keeps nothing on disk)."""
    results = payload["results"]
    kinds: list[str] = payload["meta"]["args"]["kinds"]
    lines: list[str] = []
    rows = [(name, row) for name, row in results.items() if name.startswith(HTTP)]
    dramatiq = results.get(DRAMATIQ)
    for name, http in rows if dramatiq else ():
        for kind in kinds:
            ours = _median(http[kind].get("4", {}), "submit_per_s")
            theirs = _median(dramatiq[kind].get("4", {}), "submit_per_s")
            if ours is None or theirs is None:
                continue
            verdict = "met" if ours >= theirs else "**not met**"
            lines.append(
                f"- Submissions from 4 processes at least as fast as Dramatiq + Redis "
                f"({name}, {kind}): {fmt(ours)}/s against {fmt(theirs)}/s "
                f"({ours / theirs:.2f}x): {verdict}."
            )
    for name, http in rows:
        for kind in kinds:
            p50 = _median(http[kind].get("1", {}), "p50_ms")
            if p50 is None:
                continue
            verdict = "met" if p50 < P50_GOAL_MS else "**not met**"
            lines.append(
                f"- Remote `run()` round trip p50 under {P50_GOAL_MS:g} ms on loopback "
                f"({name}, 1 process, {kind}): {p50:.2f} ms: {verdict}."
            )
    return lines


def load_line(payload: dict[str, Any]) -> str:
    meta = payload["meta"]
    shares = [
        cell["others_cpu_share"]
        for per_kind in payload["results"].values()
        for per_clients in per_kind.values()
        for row in per_clients.values()
        for cell in row["runs"]
        if cell.get("others_cpu_share") is not None
    ]
    text = f"Load: `{meta['uptime_before']}` before, `{meta['uptime_after']}` after"
    if shares:
        text += (
            f"; other processes took a median of {statistics.median(shares):.0%} of the "
            f"machine's CPU while cells ran (at most {max(shares):.0%})"
        )
    return text + "."


def summary_line(payload: dict[str, Any]) -> str:
    meta = payload["meta"]
    args = meta["args"]
    return (
        f"`{meta['command'].strip()}` on {meta['date'][:10]}, taskservice at {meta['git']}: "
        f"{meta['machine']}. Median of {args['runs']} runs; {args['tasks']:,} tasks per cell "
        "split over its clients (processes; threads for the in-process rows); submit p50/p99 "
        "is the submission call's round trip."
    )


def markdown(payload: dict[str, Any]) -> str:
    """bench/results/remote.md."""
    meta = payload["meta"]
    lines = ["# Remote submission", "", summary_line(payload), "", load_line(payload), ""]
    lines += table(payload)
    lines += ["", "## CPU per task", "", CPU_NOTE, "", *cpu_table(payload)]
    lines += ["", "## Goals", "", *goals(payload), "", "## How each system is run", ""]
    lines += [f"- **{name}**: {note}" for name, note in meta["notes"].items()]
    failures = [
        f"- {system} {kind}, {clients} clients: {row['error']}"
        for system, per_kind in payload["results"].items()
        for kind, per_clients in per_kind.items()
        for clients, row in per_clients.items()
        if "error" in row
    ]
    if failures:
        lines += ["", "## Failed cells", "", *failures]
    lines += ["", "## Versions", ""]
    lines += [f"- {name} {version}" for name, version in meta["versions"].items()]
    return "\n".join(lines) + "\n"


def docs_section(payload: dict[str, Any], chart_path: str) -> str:
    """What stands between the markers in README.md and docs/performance.md."""
    lines = [BEGIN, "", summary_line(payload), "", load_line(payload), "", *table(payload), ""]
    lines += [*goals(payload), "", f"![Remote submission]({chart_path})", "", END]
    return "\n".join(lines)


def update_docs(payload: dict[str, Any]) -> list[Path]:
    """Rewrite the marked section of each doc that has the markers."""
    changed: list[Path] = []
    for path, chart_path in DOCS.items():
        text = path.read_text()
        if BEGIN not in text or END not in text:
            continue
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        path.write_text(head + docs_section(payload, chart_path) + tail)
        changed.append(path)
    return changed


def draw(payload: dict[str, Any], path: Path) -> None:
    """Per kind: submissions/s, run->done tasks/s and submission p50/p99 against clients."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no chart")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    kinds: list[str] = payload["meta"]["args"]["kinds"]
    clients: list[int] = payload["meta"]["args"]["clients"]
    colours = ["#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
    figure, axes = plt.subplots(len(kinds), 3, figsize=(16, 4.2 * len(kinds)), squeeze=False)
    panels = (
        ("submit_per_s", "submissions/s (higher is better)"),
        ("done_per_s", "run→done tasks/s (higher is better)"),
        ("p50_ms", "submit round trip ms: p50 solid, p99 dashed (lower is better)"),
    )
    for row, kind in enumerate(kinds):
        for column, (metric, title) in enumerate(panels):
            axis = axes[row][column]
            systems = payload["results"].items()
            for colour, (system, per_kind) in zip(colours, systems, strict=False):
                series = [metric, "p99_ms"] if metric == "p50_ms" else [metric]
                for name, style in zip(series, ("-", "--"), strict=False):
                    points = [(n, per_kind[kind][str(n)].get(name)) for n in clients]
                    points = [(n, f) for n, f in points if f is not None]
                    if not points:
                        continue
                    xs = [n for n, _ in points]
                    ys = [f["median"] for _, f in points]
                    errors = [[f["median"] - f["min"] for _, f in points],
                              [f["max"] - f["median"] for _, f in points]]  # fmt: skip
                    axis.errorbar(xs, ys, yerr=errors, color=colour, linestyle=style, marker="o",
                                  capsize=3, label=system if style == "-" else None)  # fmt: skip
            axis.set_xscale("log", base=2)
            axis.set_xticks(clients, [str(n) for n in clients])
            axis.set_yscale("log")
            axis.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
            axis.yaxis.set_minor_formatter(NullFormatter())
            axis.set_xlabel("client processes (threads in-process)")
            axis.set_title(f"{kind}: {title}", fontsize=9)
            axis.grid(True, which="both", alpha=0.3)
            if metric == "p50_ms":
                axis.axhline(P50_GOAL_MS, color="black", linewidth=0.8, linestyle=":")
    axes[0][0].legend(fontsize=8)
    meta = payload["meta"]
    figure.suptitle(
        f"Remote submission, median of {meta['args']['runs']} runs (bars min-max), "
        f"{meta['machine']}, {meta['date'][:10]}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def render(out: Path, *, docs: bool, chart: bool = True) -> None:
    """remote.md and remote.png from remote.json; the docs' sections too if asked."""
    payload = json.loads((out / "remote.json").read_text())
    (out / "remote.md").write_text(markdown(payload))
    written = [out / "remote.md"]
    if chart:
        draw(payload, out / "remote.png")
        written.append(out / "remote.png")
    if docs:
        written += update_docs(payload)
    print("wrote " + ", ".join(str(path) for path in written))
