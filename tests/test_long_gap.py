"""The essay's claim as a test: real training, small sizes, fixed seeds.

"I grew up in France … I speak fluent French" (kala.tasks.LongGap, the country at a random place
among distracting text). With a short gap a SimpleRNN and an LSTM both learn to connect the
country to the language; with a longer gap the LSTM still does within the budget and the
SimpleRNN stays at chance. Both cells get the same units, budget and learning rate (3e-3, the
LSTM's tuned rate in recipes/tuned.py). This is the claim at a small scale and budget; the
recipe's sweep, each cell at its own tuned rate, is the measurement the docs quote. About a
minute and a half on a 2-core CPU.
"""

import keras
import pytest

import kala

UNITS = 32
BATCH_SIZE = 32


def train(cell, gap, steps):
    task = kala.tasks.LongGap(gap, test_size=256)
    keras.utils.set_random_seed(0)
    model = kala.build_model(cell, UNITS, **task.model_options)
    return kala.train(model, task, steps=steps, batch_size=BATCH_SIZE, learning_rate=3e-3,
                      seed=0, eval_every=50)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm"])
def test_with_a_short_gap_both_cells_connect_country_and_language(cell):
    # "The clouds are in the sky": 4 to 6 words between the country and the question.
    result = train(cell, gap=4, steps=300)
    assert result.solved, f"{cell}: error rate {result.metric:.3f} after {result.steps} steps"


def test_with_a_longer_gap_only_the_lstm_learns_the_connection():
    # 45 to 67 words between them; the same budget of 800 steps of 32 sequences for both. (At
    # gap 30 this SimpleRNN learns too, slowly: 15% wrong after the budget, on an Intel Xeon.)
    lstm = train("lstm", gap=45, steps=800)
    simple_rnn = train("simple_rnn", gap=45, steps=800)
    assert lstm.solved, f"LSTM: error rate {lstm.metric:.3f} after {lstm.steps} steps"
    assert not simple_rnn.solved and simple_rnn.steps == 800
    # Not merely slower: after the whole budget the SimpleRNN is no better than guessing.
    assert simple_rnn.metric > 0.8 * simple_rnn.baseline
