"""Inside the LSTM: the gates at work on "I grew up in France … I speak fluent French".

What it shows: the essay's step-by-step walk through the LSTM — the forget gate decides what to
throw away from the cell state, the input gate what to store, the output gate what to put out —
watched on a trained network rather than drawn. The recipe trains an LSTM on the long-gap task
of recipes/long_gap.py (the country sits 30 to 45 words before "i speak fluent", among
sentences that mention other countries), then runs the trained weights step by step through
kala.cells (`kala.cells.watch`) and records every gate and the cell state at every word.

It then measures, on the 512 test sentences, how the cell carries the country through the gap:
- which units store it: the three whose cell states at the last word lie furthest apart from
  one country to another, and for every unit the share of the variance of its cell state there
  that the country explains (η², 1 for a unit that holds nothing but the country);
- for those three units: the input gate, and what is written into the cell (|input gate ×
  candidate|), at the country, at the other countries ("we visited …") and elsewhere; the
  forget gate before the country sentence, at "grew up in", in each half of the gap, and its
  product over the gap (how much of the cell state would survive on the forget gate alone);
  the output gate in the gap and at the question; and η² of their cell state just before the
  country, just after it, and at the end.
The figure draws the forget, input and output gates and the cell state of those three units
along one test sentence.

Run it:
    python recipes/lstm_walkthrough.py               # about 15 seconds on a 2-core CPU
    python recipes/lstm_walkthrough.py --example 3   # another sentence in the figure
    python recipes/lstm_walkthrough.py --smoke       # a tiny run, for the tests

What you should see (2-core CPU): the LSTM solves the task after 19,200 sentences, in about 10 s
of training, then prints the measurements, a line each. Over seeds 0, 1 and 2 (the runs of
docs/findings.md), the three units' cell state holds the country at the question (η² 0.97 to
0.99) and did not just before it (0.01 to 0.02); their forget gates drop to 0.41 to 0.59 at
"grew up in", against 0.69 to 0.82 before that sentence and in the gap; the output gate opens
for the answer (0.57 to 0.71 in the gap, 0.84 to 0.98 at the question).
"""

import dataclasses
import os
import sys
import typing

import flags  # First: it quiets TensorFlow's start-up logging.
import keras
import numpy as np

import kala
import kala.provenance
import output
import tuned

RECIPE = "lstm_walkthrough"
# The cells with a cell state to watch (a GRU or a SimpleRNN has none).
CELL_STATE_CELLS = tuple(variant for variant in kala.models.VARIANTS
                         if "lstm" in kala.models.variant(variant)["cell"])
Cell = typing.Literal[CELL_STATE_CELLS]
Implementation = typing.Literal[kala.models.IMPLEMENTATIONS]
CARRIERS = 3  # Units drawn in the figure.
TEST_SIZE = 512


@dataclasses.dataclass
class Settings:
    gap: int = 30  # words between the country and the question (at least; up to 1.5 times more)
    example: int = 0  # which test sentence the figure draws (0 to 511)
    cell: Cell = "lstm"  # a cell with a cell state to watch, and its initialization
    implementation: Implementation = "auto"  # Keras's layer (cuDNN), the essay's, or auto
    units: int = 64  # size of the recurrent state
    steps: int = 3000  # training budget in steps (each step is one batch of fresh sentences)
    batch_size: int = 64  # sentences per step, as in the long-gap sweep
    learning_rate: float = tuned.TUNED_LEARNING_RATES["lstm"]  # Adam's rate: the LSTM's tuned rate
    clipnorm: float = 1.0  # each gradient is clipped to this norm
    seed: int = 0  # seed of the initial weights and of the training sentences
    eval_every: int = 100  # steps between evaluations on the test split
    smoke: bool = False  # a tiny run to check that everything works (seconds on a CPU)
    export: bool = False  # export the trained model for TF Serving
    saved_models: str = "saved_models"  # TF Serving model base path for --export
    model_name: str = ""  # name to export the model under (default: the recipe's name)
    results: str = "runs"  # result.json, model.keras and the gates go in DIR/lstm_walkthrough/RUN/
    checkpoint_dir: str = ""  # save checkpoints here and resume from them (default: none)
    resume_from_previous: bool = False  # if the latest checkpoint is damaged, use an older one
    logdir: str = ""  # write TensorBoard scalars here (default: none)


# A tiny run for the tests: the same code path in a few seconds.
SMOKE = {"gap": 4, "units": 8, "steps": 20, "batch_size": 8, "eval_every": 10}


def main(argv=None):
    settings = flags.parse(Settings, __doc__, argv, smoke=SMOKE)
    if settings.example >= TEST_SIZE:
        flags.fail(f"--example {settings.example}: there are {TEST_SIZE} test sentences (0 to "
                   f"{TEST_SIZE - 1})")
    output.check_export_target(settings, RECIPE)
    # Where this run's results go.
    run_name = output.run_name(settings, SMOKE, ["cell", "gap", "seed"])
    run_dir = os.path.join(settings.results, RECIPE, run_name)

    with flags.bad_arguments():
        # Data: the long-gap task, 30 to 45 words between the country and the question.
        task = kala.tasks.LongGap(settings.gap, test_size=TEST_SIZE)

        # Model: an embedding, the LSTM, and a softmax over the languages at the end.
        keras.utils.set_random_seed(settings.seed)
        model = kala.build_model(
            **kala.models.variant(settings.cell, task.max_length), units=settings.units,
            implementation=settings.implementation, **task.model_options)

        # Train: until fewer than 5% of the test sentences get the wrong language.
        trainer = kala.Trainer(
            model, task, steps=settings.steps, batch_size=settings.batch_size,
            learning_rate=settings.learning_rate, clipnorm=settings.clipnorm,
            seed=settings.seed, eval_every=settings.eval_every,
            checkpoint_dir=settings.checkpoint_dir or None, logdir=settings.logdir or None,
            resume_from_previous=settings.resume_from_previous)
    output.claim(run_dir)  # Locked for this run: the same run twice is refused.
    output.starting(RECIPE, settings, task, model, trainer)
    with output.training(RECIPE, trainer, settings.checkpoint_dir):
        result = trainer.run(on_progress=output.ProgressPrinter(task, settings.steps))
    output.write_json(os.path.join(run_dir, "result.json"), output.run_record(
        RECIPE, settings, trainer, result, output.outcome(result)))
    output.save_model(model, os.path.join(run_dir, "model.keras"), task)
    print(f"result.json and model.keras written to {run_dir}/")
    if settings.export:
        output.export(model, task, settings, RECIPE)
    print(output.summary_line(RECIPE, settings.cell, settings.batch_size, result))

    # Watch: every gate at every word of the test sentences, from the trained weights.
    tokens, languages = (np.concatenate(parts) for parts in
                         zip(*task.test_dataset().as_numpy_iterator()))
    values = kala.cells.watch(model, tokens)
    guesses = np.argmax(keras.ops.convert_to_numpy(model(tokens)), axis=-1)

    # Report: the measurements as JSON and in words, and one sentence drawn.
    measured = measure(task, tokens, languages, values)
    measured.update({
        "recipe": RECIPE, "command": " ".join(["python", *sys.argv]),
        "config": dataclasses.asdict(settings), "machine": kala.provenance.machine(),
        "finished_at": output.now(),
        "solved": result.solved, "sequences_seen": result.sequences_seen,
        "test_error_rate": result.metric, "baseline": result.baseline,
    })
    output.write_json(os.path.join(run_dir, "gates.json"), measured)
    example = settings.example
    plot(task, tokens[example], languages[example], guesses[example],
         {name: value[example] for name, value in values.items()},
         measured["carriers"], os.path.join(run_dir, "gates.png"))
    print(describe(measured))
    print(f"gates.json and gates.png written to {run_dir}/")


def explained_variance(values, labels):
    """η² of each column of `values` (N, H) by the classes in `labels` (N): the share of its
    variance that the class means explain."""
    total = ((values - values.mean(axis=0)) ** 2).sum(axis=0)
    between = sum((labels == label).sum() * (values[labels == label].mean(axis=0)
                                             - values.mean(axis=0)) ** 2
                  for label in np.unique(labels))
    return between / np.maximum(total, 1e-12)


def measure(task, tokens, languages, values):
    """What the gates and the cell state do around the country, in numbers (see the docstring)."""
    rows = np.arange(len(tokens))
    # The country is the word after "in" (only "i grew up in" has it); the distractor countries
    # follow "visited"; the question is the last three words.
    country = np.argmax(tokens == task.ids("in")[0], axis=1) + 1
    length = tokens.shape[1]
    steps = np.arange(length)[None, :]
    at_country = steps == country[:, None]
    at_distractor = np.zeros_like(at_country)
    at_distractor[:, 1:] = ((tokens[:, :-1] == task.ids("visited")[0])
                            & np.isin(tokens[:, 1:], task.ids(" ".join(task.countries))))
    after_country = steps > country[:, None]
    in_gap = after_country & (steps < length - 3)
    # "grew up in": the three words that announce the country.
    announcing = (steps >= country[:, None] - 3) & (steps < country[:, None])

    # What each step adds to the cell state: the input gate times the candidate, |i·g|.
    values = {**values, "written": np.abs(values["input"] * values["candidate"])}
    cell = values["cell"]
    end = explained_variance(cell[:, -1], languages)
    # The units that store the country the most: their cell states at the end lie furthest
    # apart from one country to another (the spread of the countries' means).
    means = np.stack([cell[languages == label, -1].mean(axis=0)
                      for label in np.unique(languages)])
    carriers = [int(unit) for unit in np.argsort(-means.std(axis=0))[:CARRIERS]]

    def mean(name, where):
        gate = values[name][:, :, carriers]                     # (N, T, carriers)
        return round(float(gate[np.broadcast_to(where, gate.shape[:2])].mean()), 4)

    measured = {
        "carriers": carriers,
        "cell_spread_at_end": [round(float(means.std(axis=0)[unit]), 4) for unit in carriers],
        "cell_eta2_at_end": {"carriers": [round(float(end[unit]), 4) for unit in carriers],
                             "median_of_all_units": round(float(np.median(end)), 4)},
        "cell_eta2_of_carriers": {
            moment: [round(float(value), 4) for value in
                     explained_variance(cell[rows, step][:, carriers], languages)]
            for moment, step in (("before_country", country - 1), ("at_country", country),
                                 ("at_end", np.full_like(country, length - 1)))},
        "input_gate": {"at_country": mean("input", at_country),
                       "at_other_countries": mean("input", at_distractor),
                       "elsewhere": mean("input", ~at_country & ~at_distractor)},
        "written": {"at_country": mean("written", at_country),
                    "at_other_countries": mean("written", at_distractor),
                    "elsewhere": mean("written", ~at_country & ~at_distractor)},
        "output_gate": {"in_gap": mean("output", in_gap),
                        "at_question": mean("output", steps == length - 1)},
    }
    if "forget" in values:
        forget = values["forget"][:, :, carriers]
        kept = np.where(in_gap[:, :, None], forget, 1.0).prod(axis=1)  # (N, carriers)
        middle = (country[:, None] + length - 3) / 2
        measured["forget_gate"] = {
            "before_country": mean("forget", steps < country[:, None] - 4),
            "at_grew_up_in": mean("forget", announcing),
            "first_half_of_gap": mean("forget", in_gap & (steps < middle)),
            "second_half_of_gap": mean("forget", in_gap & (steps >= middle)),
            "kept_through_gap_median": round(float(np.median(kept)), 4)}
    return measured


def describe(measured):
    """The measurements as a reader would say them."""
    spread = measured["cell_spread_at_end"]
    lines = [f"units that store the country the most: {measured['carriers']} (spread of their "
             f"cell state between countries {', '.join(f'{value:.2f}' for value in spread)}; η² "
             f"{', '.join(f'{value:.2f}' for value in measured['cell_eta2_at_end']['carriers'])}"
             f"; η² of the median unit {measured['cell_eta2_at_end']['median_of_all_units']:.2f})"]
    eta = measured["cell_eta2_of_carriers"]
    lines.append("their cell state, η² by the country: before it "
                 + ", ".join(f"{value:.2f}" for value in eta["before_country"]) + "; after it "
                 + ", ".join(f"{value:.2f}" for value in eta["at_country"]) + "; at the end "
                 + ", ".join(f"{value:.2f}" for value in eta["at_end"]))
    for key, what in (("input_gate", "input gate"), ("written", "written |i·g|")):
        gate = measured[key]
        lines.append(f"{what}: {gate['at_country']:.2f} at the country, "
                     f"{gate['at_other_countries']:.2f} at the other countries, "
                     f"{gate['elsewhere']:.2f} elsewhere")
    if "forget_gate" in measured:
        gate = measured["forget_gate"]
        lines.append(f"forget gate: {gate['before_country']:.2f} before the country sentence, "
                     f"{gate['at_grew_up_in']:.2f} at 'grew up in', "
                     f"{gate['first_half_of_gap']:.2f} in the first half of the gap, "
                     f"{gate['second_half_of_gap']:.2f} in the second; their product over the "
                     f"gap (median): {gate['kept_through_gap_median']:.2g}")
    gate = measured["output_gate"]
    lines.append(f"output gate: {gate['in_gap']:.2f} in the gap, {gate['at_question']:.2f} at "
                 "the question")
    return "\n".join(lines)


def plot(task, tokens, language, guess, values, carriers, path):
    """The gates and the cell state of the `carriers` along one sentence, a row each."""
    rows = [name for name in ("forget", "input", "output", "cell") if name in values]
    figure, axes = output.new_figure((13, 2.1 * len(rows) + 1), rows=len(rows))
    words = [task.vocabulary[token] for token in tokens]
    country = words.index("in") + 1
    others = [step for step, word in enumerate(words)
              if step and words[step - 1] == "visited" and word in task.countries]
    for row, name in zip(axes, rows):
        for unit in carriers:
            row.plot(values[name][:, unit], marker=".", label=f"unit {unit}")
        row.axvline(country, color="green", alpha=0.4, linewidth=6)
        for step in others:
            row.axvline(step, color="red", alpha=0.3, linewidth=4)
        row.set_ylabel({"cell": "cell state"}.get(name, f"{name} gate"))
        if name != "cell":
            row.set_ylim(-0.05, 1.05)
    axes[0].legend(fontsize="small", loc="lower left", bbox_to_anchor=(0, 1.02),
                   ncol=len(carriers), frameon=False)  # Above the data.
    axes[-1].set_xticks(range(len(words)))
    axes[-1].set_xticklabels(words, rotation=90, fontsize="small")
    for row in axes[:-1]:
        row.set_xticks(range(len(words)))
        row.set_xticklabels([])
    marked = "green: the country" + (
        ", red: the countries of \"we visited …\", which the model must not keep" if others
        else "")
    figure.suptitle(f"The gates of the units that carry the country: {task.countries[language]}"
                    f" → {task.languages[language]} (the model says {task.languages[guess]})\n"
                    f"{marked}")
    output.save_figure(figure, path)


if __name__ == "__main__":
    flags.run(main)
