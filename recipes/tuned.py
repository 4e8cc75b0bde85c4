"""Each cell's tuned Adam learning rate, task by task, for the recipes that train at it.

The long-gap task: for each cell, the rate of the grid 1e-3, 3e-3, 1e-2 that solved the most
runs at gaps 30 and 100 (then: in the fewest sequences), with seed 100, which the sweeps do not
use. The search for the three cells is committed in results/tuning/long_gap/, made by

    python recipes/long_gap.py --gaps 30,100 --seeds 1 --first-seed 100 --steps 3000 \
        --learning-rate 1e-3,3e-3,1e-2 --results results/tuning

and the variants' search, the same command with their --cells, in
results/tuning_variants/long_gap/. Each summary.json there records its command. The real
sequences' searches follow, each with its command.
"""

TUNED_LEARNING_RATES = {
    "simple_rnn": 1e-3, "lstm": 3e-3, "gru": 1e-2,
    "simple_rnn+irnn": 1e-3, "lstm1997": 3e-3, "lstm+zero_forget_bias": 1e-2,
    "lstm+chrono": 1e-2, "peephole_lstm": 1e-2, "coupled_lstm": 1e-2,
}

# Japanese vowels (recipes/classify_sequences.py): for each cell, the rate of the grid 1e-3,
# 3e-3, 1e-2 with the lowest cross-entropy on the 45 held-out training utterances (finer than
# their accuracy, where one utterance is 2%), seed 100. The search is committed in
# results/tuning/classify_sequences/, made by
#
#     python recipes/classify_sequences.py --validation --learning-rate 1e-3,3e-3,1e-2 \
#         --seeds 1 --first-seed 100 --results results/tuning
CLASSIFY_SEQUENCES = {"simple_rnn": 3e-3, "lstm": 1e-3, "gru": 1e-2}

# Electricity demand (recipes/forecast.py): for each cell and way (direct, one step), the rate of
# the grid 1e-3, 3e-3, 1e-2 with the lowest mean absolute error over the day forecast, on the
# two validation weeks, seed 100. The search is committed in results/tuning/forecast/, made by
#
#     python recipes/forecast.py --validation --learning-rate 1e-3,3e-3,1e-2 --seeds 1 \
#         --first-seed 100 --results results/tuning
FORECAST = {("simple_rnn", "direct"): 3e-3, ("simple_rnn", "one_step"): 1e-3,
            ("lstm", "direct"): 1e-2, ("lstm", "one_step"): 3e-3,
            ("gru", "direct"): 1e-2, ("gru", "one_step"): 1e-2}

# Digits pixel by pixel (recipes/pixel_digits.py): for each cell and order, the rate of the grid
# 1e-3, 3e-3, 1e-2 with the highest accuracy on the 180 held-out training digits (ties: the
# lower rate), seed 100. The search is committed in results/tuning/pixel_digits/, made by
#
#     python recipes/pixel_digits.py --validation --learning-rate 1e-3,3e-3,1e-2 --seeds 1 \
#         --first-seed 100 --results results/tuning
PIXEL_DIGITS = {("simple_rnn", "in_order"): 1e-3, ("simple_rnn", "permuted"): 1e-3,
                ("simple_rnn+irnn", "in_order"): 1e-3, ("simple_rnn+irnn", "permuted"): 3e-3,
                ("lstm", "in_order"): 1e-2, ("lstm", "permuted"): 3e-3,
                ("gru", "in_order"): 3e-3, ("gru", "permuted"): 1e-2}
