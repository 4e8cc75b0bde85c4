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
(cells.png beside the run's result.json). These features are Python's: on other text
(--text, --tfds) they are still measured, but mean less (an apostrophe opens no string in prose).

Run it:
    python recipes/char_language_model.py                      # LSTM on the standard library
    python recipes/char_language_model.py --cell gru           # another cell, the same budget
    python recipes/char_language_model.py --text book.txt      # any UTF-8 text file
    python recipes/char_language_model.py --tfds tiny_shakespeare   # needs a download
    python recipes/char_language_model.py --smoke --export     # a tiny run, exported: 20 s

What you should see (2-core CPU, about 6 minutes: 340 s of training, samples included, and 15 s
of reading): the LSTM (256 units, 342,754 weights, 1,200 steps of 128 windows, Adam 3e-3) ends
at 2.15 bits per character on validation, against 4.53 for the unigram and 3.60 for the bigram,
after 15.4 million characters, at about 45,000 characters per second. The samples go from
word-like noise to indented lines of something like Python: `def __init__(self, node):`,
`self.`, `return`, matched quotes and brackets. Then the cells that follow the code's structure,
each against the best cell of the same network before training: bracket depth r = +0.64 (0.22
before), strings -0.38 (0.22), indentation +0.57 (0.32), column +0.74 (0.53); some structure,
like the position in the line, an untrained network follows too.
"""

import dataclasses
import math
import os
import time
import typing

import flags  # First: it quiets TensorFlow's start-up logging.
import keras
import numpy as np

import kala
import kala.reading
import kala.text
import output

RECIPE = "char_language_model"
Cell = typing.Literal[kala.models.VARIANTS]
Implementation = typing.Literal[kala.models.IMPLEMENTATIONS]


@dataclasses.dataclass
class Settings:
    cell: Cell = "lstm"  # recurrent cell, and its initialization if not the default
    implementation: Implementation = "auto"  # Keras's layer (cuDNN), the essay's, or auto
    units: int = 256  # size of the recurrent state
    steps: int = 1200  # training budget in steps (each step is one batch of windows)
    batch_size: int = 128  # windows per step
    learning_rate: float = 3e-3  # Adam's learning rate
    clipnorm: float = 1.0  # each gradient is clipped to this norm
    seed: int = 0  # seed of the initial weights and of the training windows
    eval_every: int = 100  # steps between evaluations on validation (each writes a sample)
    seq_len: int = 100  # characters per training window
    embedding_dim: int = 32  # size of each character's embedding
    text: str = ""  # train on this UTF-8 text file (default: the standard library's source)
    tfds: str = ""  # train on a TensorFlow Datasets text dataset, e.g. tiny_shakespeare
    prime: str = "def "  # the text the samples start from
    temperature: float = 0.5  # sampling temperature (below 1: safer, above: wilder)
    sample_length: int = 400  # characters per sample
    smoke: bool = False  # a tiny run to check that everything works (seconds on a CPU)
    export: bool = False  # export the trained model for TF Serving
    saved_models: str = "saved_models"  # TF Serving model base path for --export
    model_name: str = ""  # name to export the model under (default: the recipe's name)
    max_generate_length: int = 1000  # under --export, the most characters generate writes a prompt
    results: str = "runs"  # result.json, model.keras, cells.png go in DIR/char_language_model/RUN/
    checkpoint_dir: str = ""  # save checkpoints here and resume from them (default: none)
    resume_from_previous: bool = False  # if the latest checkpoint is damaged, use an older one
    logdir: str = ""  # write TensorBoard scalars here (default: none)


# A tiny run for the tests: the same code path in seconds, on the first 20,000 characters.
SMOKE = {"units": 16, "steps": 20, "batch_size": 8, "seq_len": 20, "eval_every": 10,
         "embedding_dim": 8, "sample_length": 40}
SMOKE_CHARACTERS = 20_000
# What the model is read on: the validation part in 16 pieces with the state carried through
# each (for the brackets), and its first 32,000 characters in 8 pieces (for the cells).
BRACKET_PIECES, CELL_CHARACTERS, CELL_PIECES = 16, 32_000, 8


def main(argv=None):
    settings = flags.parse(Settings, __doc__, argv, smoke=SMOKE)
    if not settings.prime:
        flags.fail("--prime must hold at least one character: the samples start from it")
    output.check_export_target(settings, RECIPE)
    # Where this run's results go.
    run_name = output.run_name(settings, SMOKE, ["cell", "seed"])
    run_dir = os.path.join(settings.results, RECIPE, run_name)

    with flags.bad_arguments():
        # Data: the corpus as character ids, split by position into training and validation.
        corpus = kala.text.load_corpus(settings.text, settings.tfds)
        if settings.smoke:
            corpus = dataclasses.replace(corpus, text=corpus.text[:SMOKE_CHARACTERS])
        task = kala.text.CharLanguageModel(corpus, settings.seq_len)

        # Model: an embedding per character, a recurrent layer, and a softmax over the next
        # character at every step.
        keras.utils.set_random_seed(settings.seed)
        model = kala.build_model(
            **kala.models.variant(settings.cell, task.max_length), units=settings.units,
            embedding_dim=settings.embedding_dim, implementation=settings.implementation,
            name=f"{RECIPE}_{settings.cell.replace('+', '_')}", **task.model_options)
        # The same network before training, copied before a checkpoint can restore any weights:
        # what its cells follow without having learnt anything.
        untrained = keras.models.clone_model(model)
        untrained.set_weights(model.get_weights())

        # Train: the whole budget (a language model is never "solved"), writing a sample from
        # the prime at every evaluation.
        trainer = kala.Trainer(
            model, task, steps=settings.steps, batch_size=settings.batch_size,
            learning_rate=settings.learning_rate, clipnorm=settings.clipnorm,
            seed=settings.seed, eval_every=settings.eval_every,
            checkpoint_dir=settings.checkpoint_dir or None, logdir=settings.logdir or None,
            resume_from_previous=settings.resume_from_previous)
    writer = kala.text.Writer(model, task)
    print(f"{RECIPE}: {len(corpus.text):,} characters of {corpus.source} "
          f"({task.vocab_size - 1} distinct in the training part); {settings.cell} "
          f"{settings.units} ({model.count_params():,} parameters), learning rate "
          f"{settings.learning_rate:g}, seed {settings.seed}; validation bits per character to "
          f"beat: unigram {task.unigram_bits_per_char:.3f}, bigram "
          f"{task.bigram_bits_per_char:.3f}", flush=True)
    output.claim(run_dir)  # Locked for this run: the same run twice is refused.
    output.resuming(trainer, settings.checkpoint_dir)
    samples, sampling_seconds = [], []

    def on_progress(progress):
        if not progress.evaluated:
            return
        started = time.perf_counter()
        text = writer.generate([settings.prime], settings.sample_length, settings.temperature,
                               progress.step)[0].numpy().decode("utf-8")
        sampling_seconds.append(time.perf_counter() - started)
        samples.append({"step": progress.step, "bits_per_char": progress.metric, "text": text})
        loss = "-" if progress.loss is None else f"{progress.loss / math.log(2):.3f}"
        print(f"step {progress.step:>6,}  train bits/char {loss}  validation bits/char "
              f"{progress.metric:.3f}  {progress.seconds:6.1f} s\n"
              f"--- sample at temperature {settings.temperature}:\n{settings.prime}{text}\n---",
              flush=True)

    with output.training(RECIPE, trainer, settings.checkpoint_dir):
        result = trainer.run(on_progress=on_progress)
    # Characters per second of training alone: the time spent sampling is taken out.
    characters = result.steps * settings.batch_size * settings.seq_len
    characters_per_second = round(characters / (result.seconds - sum(sampling_seconds)))

    # Read the model: the closing brackets it foresees and the cells that follow the code,
    # trained and untrained; the best cells drawn on a piece of code.
    started = time.perf_counter()
    reading, states, cell_text = kala.reading.read_model(
        model, untrained, task, BRACKET_PIECES, CELL_CHARACTERS, CELL_PIECES)
    snippet = snippet_of(states, cell_text)
    print_reading(reading)

    # Report: the result as JSON beside the model and the figure, the model for TF Serving if
    # asked, and the run in one line.
    measured = {
        "corpus": corpus.describe(),
        "val_bits_per_char": result.metric,
        "baseline_bits_per_char": task.unigram_bits_per_char,
        "bigram_bits_per_char": task.bigram_bits_per_char,
        "sample": samples[-1]["text"] if samples else "",
        "prime": settings.prime,
        "temperature": settings.temperature,
        "parameters": model.count_params(),
        "steps": result.steps,
        "characters_trained_on": characters,
        "characters_per_second": characters_per_second,
        "seconds": round(result.seconds, 2),
        **reading,
        "reading_seconds": round(time.perf_counter() - started, 2),
        "samples": samples,
    }
    output.write_json(os.path.join(run_dir, "result.json"),
                      output.run_record(RECIPE, settings, trainer, result, measured))
    output.save_model(model, os.path.join(run_dir, "model.keras"), task)
    draw_cells(reading["readable_cells"], snippet, os.path.join(run_dir, "cells.png"),
               f"{settings.cell} {settings.units}, seed {settings.seed}")
    print(f"result.json, model.keras and cells.png (the readable cells) written to {run_dir}/")
    if settings.export:
        output.export(model, task, settings, RECIPE)
    print(f"{RECIPE}: {settings.cell} reached {result.metric:.3f} bits per character on "
          f"validation (unigram {task.unigram_bits_per_char:.3f}, bigram "
          f"{task.bigram_bits_per_char:.3f}) after {characters:,} characters at "
          f"{characters_per_second:,} characters per second; {result.seconds:.0f} s")


def snippet_of(states, cell_text):
    """About 20 lines of the first piece the cells were read on, from its first `def` after
    1,000 characters (or from its start), with every cell's state at each character in that
    cell's own standard deviations over the text read: a cell with a wide range (an LSTM's c
    can grow past 1) shows its ups and downs in colour too."""
    piece = states.shape[1]
    start = cell_text.find("\n    def ", 1000, piece - 2000) + 1
    text = "\n".join(cell_text[start:piece].split("\n")[:20])
    flat = states.reshape(-1, states.shape[-1])
    standardised = (states[0] - flat.mean(axis=0)) / np.maximum(flat.std(axis=0), 1e-6)
    return {"text": text, "states": standardised[start:start + len(text)]}


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
    lines = snippet["text"].split("\n")
    width = max(len(line) for line in lines) + 1
    figure, axes = output.new_figure((0.07 * width + 0.5, 0.16 * len(lines) * len(cells) + 1.2),
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
        image = axis.imshow(grid, cmap="coolwarm", vmin=-1, vmax=1, aspect="auto",
                            interpolation="nearest")
        bar = figure.colorbar(image, cax=axis.inset_axes([1.01, 0, 0.012, 1]),
                              ticks=[-1, 0, 1])
        bar.ax.set_yticklabels(["−2σ", "mean", "+2σ"], fontsize=7)
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_title(f"cell {cell['cell']}: r = {cell['r']:+.2f} with {name.replace('_', ' ')} "
                       f"(best |r| before training {cell['untrained_best_abs_r']:.2f})",
                       fontsize=8, loc="left")
    figure.suptitle(f"Readable cells of a character model of Python ({title}):\neach "
                    "character on the colour of the cell's state after it, red where the "
                    "feature holds", fontsize=9)
    output.save_figure(figure, path)


if __name__ == "__main__":
    flags.run(main)
