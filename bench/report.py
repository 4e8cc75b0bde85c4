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
    pipelines = [row for row in rows if row["measure"] == "pipeline"]
    if pipelines:
        lines += ["### Input pipeline: the synthetic task's, against the fastest of kala's "
                  "loops at each shape", "",
                  "| shape | pipeline alone: sequences/s | training consumes | headroom |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {_label(row)} | {row['sequences_per_second']:,.0f} | "
                  f"{row['training_sequences_per_second']:,.0f} | {row['vs_training']:,.1f}× |"
                  for row in pipelines] + [""]
    recipes = [row for row in rows if row["measure"] == "task_pipeline"]
    if recipes:
        lines += ["### Input pipeline: the recipes' tasks, kala's LSTM of "
                  f"{recipes[0]['units']} units (Trainer.run)", "",
                  "| task | batch | pipeline alone: sequences/s | training on it | training on "
                  "one fixed batch | headroom | on the pipeline ÷ on a fixed batch |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {row['title']} | {row['batch_size']} | "
                  f"{row['pipeline_sequences_per_second']:,.0f} | "
                  f"{row['training_sequences_per_second']:,.0f} | "
                  f"{row['fixed_batch_sequences_per_second']:,.0f} | {row['headroom']:,.1f}× | "
                  f"{row['vs_fixed_batch']:.2f}× |" for row in recipes] + [""]
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
    """Two tables: every contender's rate, then each kala row against its rivals."""
    timed = [row for row in trained if "rounds" in row]
    xla = any(row["impl"] == "kala_xla" for row in timed)
    columns = [("kala", "kala (Trainer.run)")] + ([("kala_xla", "kala + XLA")] if xla else []) + [
        ("keras_fit", "fit, 1 step a call"), ("keras_fit_matched", "fit, matched steps a call"),
        ("tf_function", "plain tf.function, fixed batch"), ("torch", "torch"),
        ("torch_compile", "torch.compile")]
    lines = ["### Training: sequences per second (median of rounds)", "",
             "| shape | cell | " + " | ".join(title for _, title in columns) + " |",
             "|---|---|" + "---:|" * len(columns)]
    ratios = ["### Training: kala against each rival (the median of the ratios within each "
              "round)", "",
              "| shape | cell | kala ÷ fit (1 step) | kala ÷ fit (matched) | kala ÷ best fit | "
              + ("kala + XLA ÷ best fit | " if xla else "")
              + "kala ÷ tf.function | kala ÷ torch | kala ÷ torch.compile | GFLOP/s | "
              "% of matmul | essay ÷ built-in time |",
              "|---|---|" + "---:|" * (10 if xla else 9)]
    for row in timed:
        if row["impl"] != "kala":
            continue
        same = {other["impl"]: other for other in timed
                if other["shape"] == row["shape"] and other["cell"] == row["cell"]
                and other["implementation"] in (row["implementation"], "torch")}
        if row["implementation"] != "builtin":
            same = {impl: other for impl, other in same.items() if not impl.startswith("torch")}
        cell = row["cell"] + (" (essay)" if row["implementation"] == "essay"
                              and row["cell"] in common.TORCH_MODULES else "")
        lines.append("| " + " | ".join([_label(row), cell] + [
            _rate(same.get(impl)) for impl, _ in columns]) + " |")
        cells = [_label(row), cell, _ratio(row.get("vs_keras_fit")),
                 _ratio(row.get("vs_keras_fit_matched")), _ratio(row.get("vs_best_fit"))]
        if xla:
            cells.append(_ratio(same.get("kala_xla", {}).get("vs_best_fit")))
        cells += [_ratio(row.get("vs_tf_function")), _ratio(row.get("vs_torch")),
                  _ratio(row.get("vs_torch_compile")), f"{row['gflops']:.1f}",
                  f"{row['matmul_percent']:.0f}%", _ratio(row.get("time_vs_builtin"))]
        ratios.append("| " + " | ".join(cells) + " |")
    matmul = [row["matmul_gflops"] for row in timed]
    lines += [""] + ratios + ["", f"A 1024² float32 matrix multiply, timed in every round: "
                              f"{statistics.median(matmul):.0f} GFLOP/s (medians per model "
                              f"{min(matmul):.0f} to {max(matmul):.0f})."]
    failed = [row for row in trained if row.get("compiled") is False]
    for row in failed:
        lines.append(f"`torch.compile` did not compile {row['cell']} at {_label(row)}, so it "
                     f"has no rate there: {row['reason']}")
    torch = [row for row in timed if row["impl"].startswith("torch")]
    if torch:
        lines.append(f"PyTorch ran in processes of its own ({torch[0]['threads']} threads), on "
                     "batches made before the timed loop, taking its turns in the same rounds.")
    return lines + [""]


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
