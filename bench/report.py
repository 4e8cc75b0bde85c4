"""The report: a run's rows as Markdown tables, one per measurement."""

import statistics

from bench import common


def markdown(payload):
    """The rows as Markdown tables."""
    rows = payload["rows"]
    lines = []
    trained = [row for row in rows if row["measure"] == "training"]
    if trained:
        lines += _training(trained)
    serving = [row for row in rows if row["measure"] == "serving"]
    if serving:
        lines += _serving(serving)
    for row in rows:
        if row["measure"] == "pipeline":
            lines += ["### Input pipeline", "",
                      f"At {_label(row)}, the tf.data pipeline alone makes "
                      f"{row['sequences_per_second']:,.0f} sequences/s; training consumes "
                      f"{row['training_sequences_per_second']:,.0f} (the fastest of kala's loops): "
                      f"{row['vs_training']:,.0f}× headroom.", ""]
    precision = [row for row in rows if row["measure"] == "precision"]
    if precision:
        lines += _precision(precision)
    ideas = [row for row in rows if row["measure"] == "idea"]
    if ideas:
        lines += _ideas(ideas)
    adding = [row for row in rows if row["measure"] == "adding"]
    if adding:
        lines += _adding(adding)
    return "\n".join(lines)


def _training(trained):
    xla = any(row["impl"] == "kala_xla" for row in trained)
    lines = ["### Training: sequences per second (median of rounds; a ratio is the median "
             "of the ratios within each round)", "",
             "| shape | cell | kala | " + ("kala + XLA | " if xla else "")
             + "model.fit | torch | kala ÷ fit | " + ("kala + XLA ÷ fit | " if xla else "")
             + "kala ÷ torch | GFLOP/s | % of matmul | essay ÷ built-in time |",
             "|---|---|" + "---:|" * (10 if xla else 8)]
    for row in trained:
        if row["impl"] != "kala":
            continue
        same = {other["impl"]: other for other in trained
                if other["shape"] == row["shape"] and other["cell"] == row["cell"]
                and other["implementation"] in (row["implementation"], "torch")}
        torch = same.get("torch") if row["implementation"] == "builtin" else None
        cell = row["cell"] + (" (essay)" if row["implementation"] == "essay"
                              and row["cell"] in common.TORCH_MODULES else "")
        cells = [_label(row), cell, _rate(row)]
        if xla:
            cells.append(_rate(same.get("kala_xla")))
        cells += [_rate(same.get("keras_fit")), _rate(torch), _ratio(row.get("vs_keras_fit"))]
        if xla:
            cells.append(_ratio(same.get("kala_xla", {}).get("vs_keras_fit")))
        cells += [_ratio(row.get("vs_torch") if torch is not None else None),
                  f"{row['gflops']:.1f}", f"{row['matmul_percent']:.0f}%",
                  _ratio(row.get("time_vs_builtin"))]
        lines.append("| " + " | ".join(cells) + " |")
    matmul = [row["matmul_gflops"] for row in trained]
    lines += ["", f"A 1024² float32 matrix multiply, timed in every round: "
              f"{statistics.median(matmul):.0f} GFLOP/s (medians per model "
              f"{min(matmul):.0f} to {max(matmul):.0f}).", ""]
    return lines


def _serving(serving):
    lines = ["### Serving: a kala export's `serving_default` against calling the Keras model", "",
             "| shape | cell | batch | call | p50 ms | p99 ms | sequences/s | served ÷ Keras |",
             "|---|---|---:|---|---:|---:|---:|---:|"]
    for row in serving:
        lines.append(
            f"| {_label(row)} | {row['cell']} | {row['batch']} | "
            f"{row['impl']} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
            f"{row['sequences_per_second']:,.0f} | {_ratio(row.get('vs_keras_call'))} |")
    return lines + [""]


def _precision(rows):
    features = ", ".join(rows[0]["cpu_features"]) or "none of those listed"
    lines = ["### Precision: kala's loop, LSTM, under Keras's precision policies", "",
             "| shape | policy | sequences/s | ms per step | ÷ float32 |",
             "|---|---|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {_label(row)} | {row['precision']} | {_rate(row)} | "
                     f"{row['ms_per_step']:.1f} | {_ratio(row['vs_float32'])} |")
    return lines + ["", f"The CPU's flags for 16-bit maths: {features}.", ""]


def _ideas(ideas):
    lines = ["### Ideas for a faster LSTM, each against what it would replace", "",
             "| shape | idea | replaces | timed | ms | time ÷ replaced "
             "| largest gradient difference |", "|---|---|---|---|---:|---:|---:|"]
    for row in ideas:
        difference = row.get("max_gradient_difference")
        lines.append(
            f"| {_label(row)} | {row['impl']} | {row['replaces'] or '—'} | "
            f"{row['unit']} | {row['ms']:.2f} | {_ratio(row.get('time_vs_replaced'))} | "
            f"{'—' if difference is None else f'{difference:.1e}'} |")
    return lines + [""]


def _adding(adding):
    lines = [f"### The adding problem at T = {adding[0]['seq_len']} (kala's loop, "
             "64 units, batches of 32)", "",
             "| cell | seed | solved | sequences until solved | seconds |",
             "|---|---|---|---:|---:|"]
    for row in adding:
        sequences = "—" if row["sequences_seen"] is None else f"{row['sequences_seen']:,}"
        lines.append(f"| {row['cell']} | {row['seed']} | "
                     f"{'yes' if row['solved'] else 'no'} | {sequences} | "
                     f"{row['seconds']:.1f} |")
    return lines + [""]


def _label(row):
    return common.Shape(**row["shape"]).label


def _ratio(value):
    return "—" if value is None else f"{value:.2f}×"


def _rate(row):
    return "—" if row is None else f"{row['sequences_per_second']:,.0f}"
