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
"""

import dataclasses
import os
import sys

import cli

RECIPE = "lstm_walkthrough"
# The cells with a cell state to watch (a GRU or a SimpleRNN has none).
CELL_STATE_CELLS = tuple(variant for variant in cli.VARIANTS
                         if "lstm" in variant.partition("+")[0])
CARRIERS = 3  # Units drawn in the figure.


# Setup: the defaults live here, once; every field is also a command-line flag.
@dataclasses.dataclass
class Config(cli.RecipeConfig):
    gap: int = dataclasses.field(default=30, metadata={
        "help": "words between the country and the question (at least; up to 1.5 times more)"})
    example: int = dataclasses.field(default=0, metadata={
        "help": "which test sentence the figure draws (0 to 511)"})
    # As in the long-gap sweep: the LSTM's rate of its learning-rate search
    # (long_gap.TUNED_LEARNING_RATES), 64 sentences a step.
    learning_rate: float = dataclasses.field(default=3e-3, metadata={
        "help": "Adam's learning rate"})
    batch_size: int = dataclasses.field(default=64, metadata={"help": "sequences per step"})


SMOKE = {"gap": 4, "units": 8, "steps": 20, "batch_size": 8, "eval_every": 10}
TEST_SIZE = 512


def main(argv=None):
    config = cli.parse_config(Config, __doc__, argv, smoke=SMOKE)
    if config.cell not in CELL_STATE_CELLS:
        cli.fail(f"--cell {config.cell}: the walkthrough follows a cell state; choose one of "
                 f"{', '.join(CELL_STATE_CELLS)}")
    if config.example >= TEST_SIZE:
        cli.fail(f"--example {config.example}: there are {TEST_SIZE} test sentences (0 to "
                 f"{TEST_SIZE - 1})")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    import common
    import kala

    with cli.bad_arguments_exit():
        task = kala.tasks.LongGap(config.gap, test_size=TEST_SIZE)
        keras.utils.set_random_seed(config.seed)
        model = common.build_model(config.cell, config.units, task,
                                   implementation=config.implementation)

    # Train: until fewer than 5% of the test sentences get the wrong language.
    run_name = cli.run_name(config, SMOKE, ["cell", "gap", "seed"])
    result = common.run_recipe(RECIPE, config, task, model, run_name)

    # Watch: every gate at every word of the test sentences, from the trained weights.
    tokens, languages = (np.concatenate(parts) for parts in
                         zip(*task.test_dataset().as_numpy_iterator()))
    values = kala.cells.watch(model, tokens)
    guesses = np.argmax(keras.ops.convert_to_numpy(model(tokens)), axis=-1)
    measured = measure(task, tokens, languages, values)
    measured.update({
        "recipe": RECIPE, "command": " ".join(["python", *sys.argv]),
        "config": dataclasses.asdict(config), "machine": common.machine(),
        "solved": result.solved, "sequences_seen": result.sequences_seen,
        "test_error_rate": result.metric, "baseline": result.baseline,
    })
    out_dir = os.path.join(config.results, RECIPE)
    name = f"gates-{run_name}"
    common.write_json(os.path.join(out_dir, f"{name}.json"), measured)
    plot(task, tokens[config.example], languages[config.example], guesses[config.example],
         {name: value[config.example] for name, value in values.items()},
         measured["carriers"], os.path.join(out_dir, f"{name}.png"))
    print(describe(measured))
    print(f"written to {out_dir}/{name}.json and {name}.png")


def explained_variance(values, labels):
    """η² of each column of `values` (N, H) by the classes in `labels` (N): the share of its
    variance that the class means explain."""
    import numpy as np

    total = ((values - values.mean(axis=0)) ** 2).sum(axis=0)
    between = sum((labels == label).sum() * (values[labels == label].mean(axis=0)
                                             - values.mean(axis=0)) ** 2
                  for label in np.unique(labels))
    return between / np.maximum(total, 1e-12)


def measure(task, tokens, languages, values):
    """What the gates and the cell state do around the country, in numbers (see the docstring)."""
    import numpy as np

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
    import common

    rows = [name for name in ("forget", "input", "output", "cell") if name in values]
    figure, axes = common.new_figure((13, 2.1 * len(rows) + 1), rows=len(rows))
    words = [task.vocabulary[token] for token in tokens]
    country = words.index("in") + 1
    for row, name in zip(axes, rows):
        for unit in carriers:
            row.plot(values[name][:, unit], marker=".", label=f"unit {unit}")
        row.axvline(country, color="green", alpha=0.4, linewidth=6)
        for step, word in enumerate(words):
            if step and words[step - 1] == "visited" and word in task.countries:
                row.axvline(step, color="red", alpha=0.3, linewidth=4)
        row.set_ylabel({"cell": "cell state"}.get(name, f"{name} gate"))
        if name != "cell":
            row.set_ylim(-0.05, 1.05)
    axes[0].legend(fontsize="small", loc="lower left", ncol=len(carriers))
    axes[-1].set_xticks(range(len(words)))
    axes[-1].set_xticklabels(words, rotation=90, fontsize="small")
    for row in axes[:-1]:
        row.set_xticks(range(len(words)))
        row.set_xticklabels([])
    figure.suptitle(f"{task.countries[language]} → {task.languages[language]} (the model says "
                    f"{task.languages[guess]}); green: the country, red: other countries")
    common.save_figure(figure, path)


if __name__ == "__main__":
    main()
