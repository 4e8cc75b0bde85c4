"""A character-level language model: read code one character at a time, predict the next, write.

What it shows: the essay's recurrent networks doing what its examples do, language modelling, on
real text that every machine has: the Python standard library's own source (a fixed list of
modules, kala.text.STDLIB_FILES; its size and SHA-256 go into the results). The model reads
windows of 100 characters and learns, at every position, a distribution over the next one. It is
scored in bits per character on the last 10% of the text, which it never trains on, against
what the text's own character frequencies predict (unigram) and pairs of characters (bigram).
During training it writes: from a prime text, one character at a time, each drawn from its own
prediction at a temperature (below 1: safer, above: wilder), as Karpathy's char-rnn does.
After training it reads its model (kala.reading), as Karpathy, Johnson & Fei-Fei (2015) read
theirs: how often it foresees a closing bracket, by how far back the opening one is, and which
single cells follow bracket depth, strings, indentation and the position in the line, against
the same network before training. The best cells are drawn on a piece of code
(results/char_language_model/<run>-cells.png). These features are Python's: on other text
(--text, --tfds) they are still measured, but mean less (an apostrophe opens no string in prose).

Run it:
    python recipes/char_language_model.py                      # LSTM on the standard library
    python recipes/char_language_model.py --cell gru           # another cell, the same budget
    python recipes/char_language_model.py --text book.txt      # any UTF-8 text file
    python recipes/char_language_model.py --tfds tiny_shakespeare   # needs a download
    python recipes/char_language_model.py --smoke --export     # a tiny run, exported
"""

import dataclasses
import math
import os
import time

import cli

RECIPE = "char_language_model"


@dataclasses.dataclass
class Config(cli.RecipeConfig):
    units: int = dataclasses.field(default=256, metadata={"help": "size of the recurrent state"})
    steps: int = dataclasses.field(default=1200, metadata={
        "help": "training budget in steps (each step is one batch of windows)"})
    batch_size: int = dataclasses.field(default=128, metadata={"help": "windows per step"})
    learning_rate: float = dataclasses.field(default=3e-3, metadata={
        "help": "Adam's learning rate"})
    seq_len: int = dataclasses.field(default=100, metadata={
        "help": "characters per training window"})
    embedding_dim: int = dataclasses.field(default=32, metadata={
        "help": "size of each character's embedding"})
    text: str = dataclasses.field(default="", metadata={
        "help": "train on this UTF-8 text file (default: the Python standard library's source)"})
    tfds: str = dataclasses.field(default="", metadata={
        "help": "train on a TensorFlow Datasets text dataset, e.g. tiny_shakespeare (downloads)"})
    prime: str = dataclasses.field(default="def ", metadata={
        "help": "the text the samples start from"})
    temperature: float = dataclasses.field(default=0.5, metadata={
        "help": "sampling temperature (above 0)"})
    sample_length: int = dataclasses.field(default=400, metadata={
        "help": "characters per sample"})


SMOKE = {"units": 16, "steps": 20, "batch_size": 8, "seq_len": 20, "eval_every": 10,
         "embedding_dim": 8, "sample_length": 40}


def load_corpus(config):
    """The corpus the flags name; a bad one ends the run with one line."""
    import kala.text

    with cli.bad_arguments_exit():
        if config.text and config.tfds:
            raise ValueError("--text and --tfds exclude each other: choose one")
        if config.text:
            corpus = kala.text.read_corpus(config.text)
        elif config.tfds:
            corpus = kala.text.tfds_corpus(config.tfds)
        else:
            corpus = kala.text.stdlib_corpus()
        if config.smoke:  # The smoke run reads the first 20,000 characters.
            corpus = dataclasses.replace(corpus, text=corpus.text[:20_000])
    return corpus


def main(argv=None):
    config = cli.parse_config(Config, __doc__, argv, smoke=SMOKE)
    check_sampling(config)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import common

    common.check_export_target(RECIPE, config)
    corpus = load_corpus(config)
    task, model, record = run(config, corpus, os.path.join(config.results, RECIPE))
    if config.export:
        common.export(RECIPE, config, task, model)
    print(f"{RECIPE}: {config.cell} reached {record['val_bits_per_char']:.3f} bits per character "
          f"on validation (unigram {task.unigram_bits_per_char:.3f}, bigram "
          f"{task.bigram_bits_per_char:.3f}) after {record['characters_trained_on']:,} characters "
          f"at {record['characters_per_second']:,} characters per second; "
          f"{record['seconds']:.0f} s")

    # What you should see: the samples go from noise to words, then to indented lines of
    # something like Python: `def`, `self.`, `return`, matched quotes and brackets. Then the
    # cells that follow the code's structure, each against the best cell of the same network
    # before training (some structure, like the position in the line, an untrained network
    # follows too).


def check_sampling(config):
    """Sampling settings that cannot work end the run now, not after the training."""
    if not config.temperature > 0:
        cli.fail(f"--temperature must be above 0; got {config.temperature}")
    if not config.prime:
        cli.fail("--prime must hold at least one character: the samples start from it")


def run(config, corpus, out_dir, draw=True):
    """Trains the model `config` names on `corpus`, printing progress
    and samples, reads what it learned (`read_model`), and writes the run's JSON (and, with
    `draw`, its readable cells as a PNG) into `out_dir`. Returns the task, the model and the
    JSON record."""
    import keras

    import common
    import kala
    import kala.text

    units = config.units
    # Data: the corpus as character ids, split by position into training and validation.
    with cli.bad_arguments_exit():
        task = kala.text.CharLanguageModel(corpus, config.seq_len)
        # Model: an embedding per character, a recurrent layer, and a softmax over the next
        # character at every step.
        keras.utils.set_random_seed(config.seed)
        model = common.build_model(config.cell, units, task,
                                   embedding_dim=config.embedding_dim,
                                   implementation=config.implementation,
                                   name=f"{RECIPE}_{config.cell.replace('+', '_')}")
    # The same network before training: what its cells follow without having learned anything.
    untrained = keras.models.clone_model(model)
    untrained.set_weights(model.get_weights())
    trainer = common.make_trainer(config, task, model)
    writer = kala.text.Writer(model, task)

    def sample(seed):
        """What the model writes after the prime, now (traced once: its weights are variables)."""
        text = writer.generate([config.prime], config.sample_length, config.temperature, seed)
        return text[0].numpy().decode("utf-8")

    print(f"{RECIPE}: {len(corpus.text):,} characters of {corpus.source} "
          f"({task.vocab_size - 1} distinct in the training part); {config.cell} {units} "
          f"({model.count_params():,} parameters), learning rate {config.learning_rate:g}, seed "
          f"{config.seed}; validation bits per character to beat: unigram "
          f"{task.unigram_bits_per_char:.3f}, bigram {task.bigram_bits_per_char:.3f}",
          flush=True)
    samples, sampling_seconds = [], []

    def on_progress(progress):
        if not progress.evaluated:
            return
        started = time.perf_counter()
        text = sample(progress.step)
        sampling_seconds.append(time.perf_counter() - started)
        samples.append({"step": progress.step, "bits_per_char": progress.metric, "text": text})
        loss = "-" if progress.loss is None else f"{progress.loss / math.log(2):.3f}"
        print(f"step {progress.step:>6,}  train bits/char {loss}  validation bits/char "
              f"{progress.metric:.3f}  {progress.seconds:6.1f} s\n"
              f"--- sample at temperature {config.temperature}:\n{config.prime}{text}\n---",
              flush=True)

    result = common.train_or_exit(RECIPE, config, trainer, on_progress)
    training_seconds = result.seconds - sum(sampling_seconds)
    characters = result.steps * config.batch_size * config.seq_len

    # Reading: the closing brackets and the cells, trained and untrained.
    started = time.perf_counter()
    reading, snippet = read_model(model, untrained, task)
    run_name = cli.run_name(config, SMOKE, ["cell", "seed"])
    if draw:
        path = os.path.join(out_dir, f"{run_name}-cells.png")
        draw_cells(reading["readable_cells"], snippet, path,
                   f"{config.cell} {units}, seed {config.seed}")
        print(f"readable cells drawn in {path}")
    print_reading(reading)
    record = common.run_record(RECIPE, config, trainer, result, {
        "corpus": corpus.describe(),
        "val_bits_per_char": result.metric,
        "baseline_bits_per_char": task.unigram_bits_per_char,
        "bigram_bits_per_char": task.bigram_bits_per_char,
        "sample": samples[-1]["text"] if samples else "",
        "prime": config.prime,
        "temperature": config.temperature,
        "parameters": model.count_params(),
        "steps": result.steps,
        "characters_trained_on": characters,
        "characters_per_second": round(characters / training_seconds),
        "seconds": round(result.seconds, 2),
        **reading,
        "reading_seconds": round(time.perf_counter() - started, 2),
        "samples": samples,
    })
    path = os.path.join(out_dir, f"{run_name}.json")
    common.write_json(path, record)
    print(f"result written to {path}")
    return task, model, record


# What the cells are read on: the first characters of the validation part, in pieces.
CELL_CHARACTERS, CELL_PIECES = 32_000, 8
BRACKET_PIECES = 16


def read_model(model, untrained, task):
    """What a trained model does with the validation part's long-range structure:
    - `carried_state_bits_per_char` and `closing_brackets`: the validation part read in 16
      pieces with the state carried through each (training reads 100 characters at a time), and
      how often the most likely next character is the closing bracket that comes, by distance
      to its opening bracket (kala.reading.closing_brackets);
    - `readable_cells`: for each feature of kala.reading.FEATURES, the cell whose state
      correlates best with it, and the best correlation among the untrained network's cells.
    Returns that dict and, for drawing, a snippet of text with every cell's state on it."""
    import numpy as np

    from kala import reading

    text = task.validation_text
    # Fewer pieces for a short text (--text): each holds at least 2 characters.
    bracket_pieces = min(BRACKET_PIECES, len(text) // 2)
    ids, probabilities = reading.run_over(model, task, text, bracket_pieces)
    cell_text = text[:CELL_CHARACTERS]
    pieces = min(CELL_PIECES, len(cell_text) // 2)
    features = reading.code_features(cell_text[:len(cell_text) // pieces * pieces])
    states = reading.cell_states(model, task, cell_text, pieces)
    trained = reading.correlations(states, features)
    before = reading.correlations(reading.cell_states(untrained, task, cell_text, pieces),
                                  features)
    cells = {}
    for name in reading.FEATURES:
        best = int(np.argmax(np.abs(trained[name])))
        cells[name] = {"cell": best, "r": float(trained[name][best]),
                       "untrained_best_abs_r": float(np.max(np.abs(before[name])))}
    # The snippet: about 20 lines of the first piece, from its first `def` after 1,000
    # characters (or from its start).
    piece = states.shape[1]
    start = cell_text.find("\n    def ", 1000, piece - 2000) + 1
    lines = cell_text[start:piece].split("\n")[:20]
    # Each cell's state in its own standard deviations over the text read, so that a cell with
    # a wide range (an LSTM's c can grow past 1) shows its ups and downs in colour too.
    flat = states.reshape(-1, states.shape[-1])
    standardised = (states[0] - flat.mean(axis=0)) / np.maximum(flat.std(axis=0), 1e-6)
    snippet = {"text": "\n".join(lines),
               "states": standardised[start:start + len("\n".join(lines))]}
    return {
        "carried_state_pieces": bracket_pieces,
        "carried_state_bits_per_char": reading.bits_per_char(ids, probabilities),
        "closing_brackets": reading.closing_brackets(text, ids, probabilities),
        "readable_cells": cells,
    }, snippet


def print_reading(reading):
    print(f"validation read in {reading['carried_state_pieces']} pieces, the state carried: "
          f"{reading['carried_state_bits_per_char']:.3f} bits per character")
    print("closing brackets predicted (most likely next character), by distance to the opening: "
          + (", ".join(f"{row['distance_from']}-{row['distance_to'] or ''}: "
                       f"{row['accuracy']:.0%} of {row['count']:,}"
                       for row in reading["closing_brackets"]) or "none to predict"))
    for name, cell in reading["readable_cells"].items():
        print(f"cell {cell['cell']:>4} follows {name:<14} r = {cell['r']:+.2f}  (untrained "
              f"network's best |r| {cell['untrained_best_abs_r']:.2f})")


def draw_cells(cells, snippet, path, title):
    """The snippet once per feature, each character on the colour of the feature's best cell
    after it: its state in standard deviations from its mean, from blue (-2 or below) through
    white (the mean) to red (+2 or above), the sign turned so that red goes with the feature."""
    import numpy as np

    import common

    lines = snippet["text"].split("\n")
    width = max(len(line) for line in lines) + 1
    figure, axes = common.new_figure((0.07 * width + 0.5, 0.16 * len(lines) * len(cells) + 1.2),
                                     rows=len(cells))
    for axis, (name, cell) in zip(np.atleast_1d(axes), cells.items()):
        values = np.clip(snippet["states"][:, cell["cell"]] / 2, -1, 1) * np.sign(cell["r"] or 1)
        grid = np.full((len(lines), width), np.nan)
        start = 0
        for row, line in enumerate(lines):
            colours = values[start:start + len(line) + 1]  # The line and its newline.
            grid[row, :len(colours)] = colours
            for column, char in enumerate(line):
                if not char.isspace():
                    axis.text(column, row, char, ha="center", va="center", family="monospace",
                              fontsize=8, parse_math=False)
            start += len(line) + 1
        axis.imshow(grid, cmap="coolwarm", vmin=-1, vmax=1, aspect="auto",
                    interpolation="nearest")
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_title(f"cell {cell['cell']}: r = {cell['r']:+.2f} with {name.replace('_', ' ')} "
                       f"(best |r| before training {cell['untrained_best_abs_r']:.2f})",
                       fontsize=8, loc="left")
    figure.suptitle(f"Readable cells of a character model of Python ({title})", fontsize=9)
    common.save_figure(figure, path)


if __name__ == "__main__":
    main()
