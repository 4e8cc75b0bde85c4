"""A character-level language model: read code one character at a time, predict the next, write.

What it shows: the essay's recurrent networks doing what its examples do, language modelling, on
real text that every machine has: the Python standard library's own source (a fixed list of
modules, kala.text.STDLIB_FILES; its size and SHA-256 go into the results). The model reads
windows of 100 characters and learns, at every position, a distribution over the next one. It is
scored in bits per character on the last 10% of the text, which it never trains on, against
what the text's own character frequencies predict (unigram) and pairs of characters (bigram).
During training it writes: from a prime text, one character at a time, each drawn from its own
prediction at a temperature (below 1: safer, above: wilder), as Karpathy's char-rnn does.

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
    if not config.temperature > 0:
        cli.fail(f"--temperature must be above 0; got {config.temperature}")
    if not config.prime:
        cli.fail("--prime must hold at least one character: the samples start from it")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    import common
    import kala
    import kala.text

    common.check_export_target(RECIPE, config)
    # Data: the corpus as character ids, split by position into training and validation.
    corpus = load_corpus(config)
    with cli.bad_arguments_exit():
        task = kala.text.CharLanguageModel(corpus, config.seq_len)
        # Model: an embedding per character, a recurrent layer, and a softmax over the next
        # character at every step.
        keras.utils.set_random_seed(config.seed)
        model = common.build_model(config.cell, config.units, task,
                                   embedding_dim=config.embedding_dim,
                                   implementation=config.implementation,
                                   name=f"{RECIPE}_{config.cell.replace('+', '_')}")
    trainer = common.make_trainer(config, task, model)
    writer = kala.text.Writer(model, task)

    def sample(seed):
        """What the model writes after the prime, now (traced once: its weights are variables)."""
        text = writer.generate([config.prime], config.sample_length, config.temperature, seed)
        return text[0].numpy().decode("utf-8")

    print(f"{RECIPE}: {len(corpus.text):,} characters of {corpus.source} "
          f"({task.vocab_size - 1} distinct in the training part); {config.cell} "
          f"({model.count_params():,} parameters); validation bits per character to beat: "
          f"unigram {task.unigram_bits_per_char:.3f}, bigram {task.bigram_bits_per_char:.3f}",
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
    run_name = cli.run_name(config, SMOKE, ["cell", "seed"])
    path = os.path.join(config.results, RECIPE, f"{run_name}.json")
    common.write_json(path, common.run_record(RECIPE, config, trainer, result, {
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
        "samples": samples,
    }))
    print(f"result written to {path}")
    if config.export:
        common.export(RECIPE, config, task, model)
    print(f"{RECIPE}: {config.cell} reached {result.metric:.3f} bits per character on validation "
          f"(unigram {task.unigram_bits_per_char:.3f}, bigram {task.bigram_bits_per_char:.3f}) "
          f"after {characters:,} characters at {characters / training_seconds:,.0f} characters "
          f"per second; {result.seconds:.0f} s")

    # What you should see: the samples go from noise to words, then to indented lines of
    # something like Python: `def`, `self.`, `return`, matched quotes and brackets.


if __name__ == "__main__":
    main()
