"""The results table (stored in the JSON and printed with rich) and the throughput-vs-batch-size plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _row(benchmark: str, measure: str, value: Any, unit: str, reference: Any = None, ref_name: str = "",
         ratio: Any = None, target: str = "", met: bool | None = None) -> dict[str, Any]:
    return {"benchmark": benchmark, "measure": measure, "value": value, "unit": unit, "reference": reference,
            "reference_name": ref_name, "ratio": ratio, "target": target, "met": met}


def _versus_rows(v: dict[str, Any], benchmark: str, trainer: dict[str, float], defaults: set[int],
                 target: float) -> list[dict[str, Any]]:
    """Throughput at the default batch and at 1024 (CSV and f32-block), and prequential accuracy, against one loop.

    trainer: the trainer benchmark's records/s by "<wire format> <batch size>".
    """
    loop = v["tutorial"]
    rate = loop["records_per_second"]
    name = f"fit loop, {loop.get('mini_dataset_records', 100):,}-record mini datasets"
    out = [_row(benchmark, "throughput (default batch)", v["trainer_records_per_second"], "records/s", rate, name,
                v["speedup"], f">= {target:.0f}x", v["speedup"] is not None and v["speedup"] >= target)]
    by_wire = v.get("speedup_by_wire_format_and_batch_size") or {}
    for wire, batch in [("csv", 1024)] + [("f32-block", b) for b in sorted({1024} | defaults)]:
        speed = by_wire.get(f"{wire} {batch}")
        if speed is None:
            continue
        label = f"throughput (batch {batch}" + (", f32-block wire)" if wire != "csv" else ")")
        value = trainer.get(f"{wire} {batch}", round(speed * rate))
        out.append(_row(benchmark, label, value, "records/s", rate, name, speed, f">= {target:.0f}x",
                        speed >= target))
    out.append(_row(benchmark, "prequential accuracy", v["trainer_prequential_accuracy_same_records"], "",
                    loop["prequential_accuracy"], name, v["accuracy_difference"], ">= tutorial",
                    v["accuracy_difference"] >= 0))
    return out


def rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per reported figure: value, reference measured in the same run, ratio, target, met."""
    b = document["benchmarks"]
    t = document["targets"]
    out: list[dict[str, Any]] = []
    if "trainer_throughput" in b:
        for r in b["trainer_throughput"]["results"]:
            if r["batch_size"] not in (256, 1024) and not r["default"]:
                continue
            label = f"batch {r['batch_size']}" + (" (auto's step behind a long backlog)" if r["default"] else "") + \
                (f", {r['wire_format']} wire" if r["wire_format"] != "csv" else "")
            out.append(_row("trainer throughput", label, r["records_per_second"], "records/s",
                            r["ceiling_records_per_second"], "train_on_batch ceiling", r["ratio"],
                            f">= {t['trainer_ratio']:.0%} of ceiling", r["ratio"] >= t["trainer_ratio"]))
    if "tutorial_loop" in b:
        tl = b["tutorial_loop"]
        results = b.get("trainer_throughput", {}).get("results", [])
        defaults = {r["batch_size"] for r in results if r["default"]}
        trainer = {f"{r['wire_format']} {r['batch_size']}": r["records_per_second"] for r in results}
        out += _versus_rows(tl, "vs tutorial loop", trainer, defaults, t["tutorial_speedup"])
        if "small_mini_datasets" in tl:
            out += _versus_rows(tl["small_mini_datasets"], "vs 100-record fit loop", trainer, defaults,
                                t["tutorial_speedup"])
    if "producer" in b:
        pr = b["producer"]
        for name, r in pr["results"].items():
            target = f">= {t['producer_csv_rps']:,.0f}/s" if name.startswith("csv") else ""
            met = r["records_per_second"] >= t["producer_csv_rps"] if name.startswith("csv") else None
            out.append(_row("producer", name, r["records_per_second"], "records/s",
                            pr["raw_client_records_per_second"], "raw client", r["ratio_to_raw_client"], target, met))
    if "evaluator" in b:
        ev = b["evaluator"]
        out.append(_row("evaluator", f"batch {ev['batch_size']}", ev["records_per_second"], "records/s",
                        ev["predict_ceiling_records_per_second"], "in-memory predict", ev["ratio"],
                        f">= {t['evaluator_rps']:,.0f}/s", ev["records_per_second"] >= t["evaluator_rps"]))
        for wire in ("f32", "f32-block"):
            if wire not in ev:
                continue
            e = ev[wire]
            out.append(_row("evaluator", f"batch {ev['batch_size']}, {wire} wire", e["records_per_second"], "records/s",
                            e["predict_ceiling_records_per_second"], "in-memory predict", e["ratio"],
                            f">= {t['evaluator_rps']:,.0f}/s", e["records_per_second"] >= t["evaluator_rps"]))
    if "freshness" in b:
        fr = b["freshness"]
        for q in ("p50", "p95", "max"):
            target = f"<= {t['freshness_p95_s']:g} s" if q == "p95" else ""
            value = fr[f"{q}_seconds"]
            met = value is not None and value <= t["freshness_p95_s"] if q == "p95" else None
            out.append(_row("freshness", f"{q} at {fr['input_records_per_second']:,.0f} rec/s", value, "s",
                            target=target, met=met))
    if "memory" in b:
        mem = b["memory"]
        for who in ("trainer", "evaluator"):
            m = mem.get(who) or {}
            if not m:
                continue
            growth = m.get("rss_growth_mb")
            out.append(_row("memory", f"{who} RSS growth", growth, "MB",
                            target=f"<= {t['rss_growth_mb']:g} MB",
                            met=growth is not None and growth <= t["rss_growth_mb"]))
            peak = m.get("peak_rss_mb")
            out.append(_row("memory", f"{who} peak RSS", peak, "MB",
                            target=f"<= {t['trainer_peak_rss_mb']:g} MB" if who == "trainer" else "",
                            met=(peak is not None and peak <= t["trainer_peak_rss_mb"]) if who == "trainer"
                            else None))
    if "startup" in b:
        st = b["startup"]
        ref = st["import_tensorflow_keras_seconds"]
        first = st["trainer_first_batch_seconds"]
        out.append(_row("start-up", "trainer first batch", first, "s", ref, "import tensorflow+keras",
                        st["trainer_ratio_to_import"], f"<= {t['startup_first_batch_s']:g} s",
                        first is not None and first <= t["startup_first_batch_s"]))
        out.append(_row("start-up", "evaluator first metric", st["evaluator_first_metric_seconds"], "s", ref,
                        "import tensorflow+keras", st["evaluator_ratio_to_import"]))
    out += _predictor_rows(b, t)
    return out


def _predictor_rows(b: dict[str, Any], t: dict[str, Any]) -> list[dict[str, Any]]:
    """The predictor's rows: throughput against in-memory predict, REST latency, promotion latency."""
    out: list[dict[str, Any]] = []
    if "predictor_throughput" in b:
        for r in b["predictor_throughput"]["results"]:
            label = f"batch {r['batch_size']}" + (" (default)" if r["default"] else "") + \
                (f", {r['wire_format']} wire" if r["wire_format"] != "csv" else "")
            target = f">= {t['predictor_ratio']:.0%} of predict"
            met = r["ratio"] >= t["predictor_ratio"]
            if r["wire_format"] == "csv":
                target += f", >= {t['predictor_csv_rps']:,.0f}/s"
                met = met and r["records_per_second"] >= t["predictor_csv_rps"]
            out.append(_row("predictor throughput", label, r["records_per_second"], "records/s",
                            r["predict_records_per_second"], "in-memory predict", r["ratio"], target, met))
            if "transport_records_per_second" in r:  # runs before 2026-12-02 did not measure it
                out.append(_row("predictor throughput", f"{label}: against its Kafka work alone",
                                r["records_per_second"], "records/s", r["transport_records_per_second"],
                                "consume + produce + transaction, nothing else", r["ratio_to_transport"]))
    if "predictor_http" in b:
        ph = b["predictor_http"]
        ref = ph["in_process_predict_ms"]
        for r in ph["results"]:
            n = r["clients"]
            for q in ("p50", "p99"):
                value = r[f"{q}_ms"]
                checked = q == "p99" and n == 8
                ratio = round(value / ref, 1) if value is not None and ref else None
                out.append(_row("predictor REST", f"{q}, {n} client{'s' if n > 1 else ''}", value, "ms", ref,
                                "in-process predict, 1 row", ratio,
                                f"<= {t['predictor_http_p99_ms']:g} ms" if checked else "",
                                (value is not None and value <= t["predictor_http_p99_ms"]) if checked else None))
            out.append(_row("predictor REST", f"requests/s, {n} client{'s' if n > 1 else ''}",
                            r["requests_per_second"], "requests/s"))
            out.append(_row("predictor REST", f"failed requests, {n} client{'s' if n > 1 else ''}", r["errors"], "",
                            target=f"<= {t['predictor_http_failed']}", met=r["errors"] <= t["predictor_http_failed"]))
    if "promotion_latency" in b:
        pl = b["promotion_latency"]
        for q in ("p50", "p95"):
            value = pl[f"{q}_seconds"]
            ref = pl["load_version_seconds"]
            ratio = round(value / ref, 1) if value is not None and ref else None
            out.append(_row("promotion latency", f"{q} publish -> served", value, "s", ref,
                            "load_version in process", ratio))
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def print_table(document: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    machine = document["machine"]
    table = Table(title=f"streamtrain benchmarks ({document['mode']}, {document['git_revision']}, "
                        f"load {machine['load_average_at_start'][0]} -> {machine['load_average_at_end'][0]})")
    for column in ("benchmark", "measure", "value", "unit", "reference", "ratio", "target", "met"):
        table.add_column(column, justify="right" if column in ("value", "reference", "ratio") else "left")
    for r in document["table"]:
        reference = f"{_fmt(r['reference'])} ({r['reference_name']})" if r["reference"] is not None else "-"
        met = {True: "[green]yes[/green]", False: "[red]no[/red]", None: ""}[r["met"]]
        table.add_row(r["benchmark"], r["measure"], _fmt(r["value"]), r["unit"], reference, _fmt(r["ratio"]),
                      r["target"], met)
    Console(width=160).print(table)


def markdown_table(document: dict[str, Any]) -> str:
    """The same table as Markdown (for docs/performance.md)."""
    lines = ["| benchmark | measure | value | reference (same run) | ratio | target | met |",
             "|---|---|---:|---:|---:|---|---|"]
    for r in document["table"]:
        value = f"{_fmt(r['value'])} {r['unit']}".strip()
        reference = f"{_fmt(r['reference'])} ({r['reference_name']})" if r["reference"] is not None else ""
        met = {True: "yes", False: "**no**", None: ""}[r["met"]]
        lines.append(f"| {r['benchmark']} | {r['measure']} | {value} | {reference} | {_fmt(r['ratio'])} | "
                     f"{r['target']} | {met} |")
    return "\n".join(lines)


def plot_throughput(document: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    every = document["benchmarks"]["trainer_throughput"]["results"]
    results = [r for r in every if r["wire_format"] == "csv"]
    binary = [r for r in every if r["wire_format"] == "f32"]
    blocks = [r for r in every if r["wire_format"] == "f32-block"]
    sizes = [r["batch_size"] for r in results]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    ax.plot(sizes, [r["ceiling_records_per_second"] for r in results], "o--", color="grey",
            label="ceiling: Keras train_on_batch, in memory")
    ax.plot(sizes, [r["learner_in_memory_records_per_second"] for r in results], "s:", color="tab:orange",
            label="trainer's test-then-train step, in memory")
    ax.plot(sizes, [r["records_per_second"] for r in results], "o-", color="tab:blue",
            label="trainer: consume + decode + test-then-train from Kafka")
    if binary:
        ax.plot([r["batch_size"] for r in binary], [r["records_per_second"] for r in binary], "D", color="tab:green",
                label="trainer, f32 wire format")
    if blocks:
        ax.plot([r["batch_size"] for r in blocks], [r["records_per_second"] for r in blocks], "^-", color="tab:purple",
                label="trainer, f32-block wire format (256 rows a record)")
        for r in blocks:
            ax.annotate(f"{r['ratio']:.0%}", (r["batch_size"], r["records_per_second"]), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=8, color="tab:purple")
    for r in results:
        ax.annotate(f"{r['ratio']:.0%}", (r["batch_size"], r["records_per_second"]), textcoords="offset points",
                    xytext=(0, -14), ha="center", fontsize=8, color="tab:blue")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("micro-batch size (records)")
    ax.set_ylabel("records per second")
    ax.set_title(f"Trainer throughput vs batch size ({document['mode']} run, {document['git_revision']})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# Fields each benchmark's JSON must carry (the quick-mode test checks them; values may vary, shapes may not).
REQUIRED = {
    "trainer_throughput": ["results", "target_ratio"],
    "tutorial_loop": ["tutorial", "speedup", "trainer_prequential_accuracy_same_records", "accuracy_difference",
                      "small_mini_datasets"],
    "producer": ["raw_client_records_per_second", "results"],
    "evaluator": ["records_per_second", "predict_ceiling_records_per_second", "ratio"],
    "freshness": ["p50_seconds", "p95_seconds", "max_seconds", "records_measured", "window_seconds"],
    "memory": ["trainer", "evaluator"],
    "startup": ["trainer_first_batch_seconds", "evaluator_first_metric_seconds", "import_tensorflow_keras_seconds"],
    "predictor_throughput": ["results", "target_ratio"],
    "predictor_http": ["results", "in_process_predict_ms"],
    "promotion_latency": ["p50_seconds", "p95_seconds", "load_version_seconds", "steps"],
}
TRAINER_ROW = ["batch_size", "records_per_second", "ceiling_records_per_second", "ratio",
               "learner_in_memory_records_per_second"]
PREDICTOR_ROW = ["batch_size", "records_per_second", "predict_records_per_second", "ratio"]
HTTP_ROW = ["clients", "requests_per_second", "p50_ms", "p99_ms"]


def problems(document: dict[str, Any], expected: tuple[str, ...]) -> list[str]:
    """What is missing or malformed in a results document (empty: well-formed)."""
    found: list[str] = []
    for key in ("schema", "mode", "date", "git_revision", "machine", "targets", "benchmarks", "table"):
        if key not in document:
            found.append(f"no top-level {key!r}")
    benchmarks = document.get("benchmarks", {})
    for name in expected:
        if name not in benchmarks:
            found.append(f"benchmark {name!r} missing")
            continue
        for field in REQUIRED[name]:
            if benchmarks[name].get(field) is None:
                found.append(f"{name}: {field!r} missing or null")
    for row in benchmarks.get("trainer_throughput", {}).get("results", []):
        found += [f"trainer_throughput row: {f!r} missing" for f in TRAINER_ROW
                  if not isinstance(row.get(f), int | float)]
    for row in benchmarks.get("predictor_throughput", {}).get("results", []):
        found += [f"predictor_throughput row: {f!r} missing" for f in PREDICTOR_ROW
                  if not isinstance(row.get(f), int | float)]
    for row in benchmarks.get("predictor_http", {}).get("results", []):
        found += [f"predictor_http row: {f!r} missing" for f in HTTP_ROW if not isinstance(row.get(f), int | float)]
    for name, row in benchmarks.get("producer", {}).get("results", {}).items():
        if not isinstance(row.get("records_per_second"), int | float):
            found.append(f"producer {name}: no records_per_second")
    for who in ("trainer", "evaluator"):
        memory = benchmarks.get("memory", {}).get(who) or {}
        if "memory" in benchmarks and not isinstance(memory.get("peak_rss_mb"), int | float):
            found.append(f"memory: no peak RSS for the {who}")
        if "memory" in benchmarks and not isinstance(memory.get("rss_growth_mb"), int | float):
            found.append(f"memory: no RSS growth for the {who}")
    for row in document.get("table", []):
        if set(row) != {"benchmark", "measure", "value", "unit", "reference", "reference_name", "ratio", "target",
                        "met"}:
            found.append(f"table row with unexpected fields: {sorted(row)}")
    return found


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.report RESULTS.json`: the table as Markdown (for docs/performance.md)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=main.__doc__)
    parser.add_argument("results", type=Path, help="a JSON file written by python -m benchmarks")
    args = parser.parse_args(argv)
    print(markdown_table(json.loads(args.results.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
