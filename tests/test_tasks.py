"""The task generators against their published definitions (each task's docstring cites them)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from kala import tasks


def batches(task, count=20, batch_size=64, seed=0):
    return [task.batch(seed, tasks.TRAIN_STREAM, index, batch_size) for index in range(count)]


# --- Adding problem, 2015/16 convention. -------------------------------------------------------

def test_adding_2016_matches_its_definition():
    task = tasks.AddingProblem(50)
    for inputs, targets in batches(task):
        values, markers = inputs[..., 0], inputs[..., 1]
        assert inputs.shape == (64, 50, 2) and targets.shape == (64, 1)
        assert inputs.dtype == np.float32 and targets.dtype == np.float32
        assert np.all((values >= 0) & (values < 1))
        assert set(np.unique(markers)) == {0.0, 1.0}
        # Exactly one marker in each half.
        assert np.all(markers[:, :25].sum(axis=1) == 1)
        assert np.all(markers[:, 25:].sum(axis=1) == 1)
        np.testing.assert_allclose(targets[:, 0], (values * markers).sum(axis=1), rtol=1e-6)


def test_adding_2016_baseline_is_the_score_of_always_guessing_one():
    task = tasks.AddingProblem(30, test_size=4096)
    errors = [task.metric(targets, tf.ones_like(targets)).numpy()
              for _, targets in task.test_dataset()]
    assert task.baseline == pytest.approx(1 / 6)
    assert np.mean(np.concatenate(errors)) == pytest.approx(task.baseline, abs=0.01)
    assert task.is_solved(0.009) and not task.is_solved(0.011)


# --- Adding problem, Hochreiter & Schmidhuber 1997, Experiment 4. --------------------------------

def test_adding_1997_matches_its_definition():
    task = tasks.AddingProblem(100, definition="1997")
    lengths, x2_first = set(), []
    for inputs, targets in batches(task, count=60):
        values, markers = inputs[..., 0], inputs[..., 1]
        length = inputs.shape[1]
        lengths.add(length)
        assert 100 <= length <= 110
        assert np.all((values >= -1) & (values <= 1))
        assert set(np.unique(markers)) <= {-1.0, 0.0, 1.0}
        marked = markers == 1.0
        assert np.all(marked.sum(axis=1) == 2)
        positions = np.sort(np.nonzero(marked)[1].reshape(-1, 2), axis=1)
        # X1 is one of the first ten pairs, X2 one of the first T/2 - 1 pairs still unmarked.
        assert np.all(positions[:, 0] < 10)
        assert np.all(positions[:, 1] < 50)
        # The first and last pairs are marked -1, unless the first is marked 1.
        assert np.all(markers[:, -1] == -1.0)
        assert np.all((markers[:, 0] == -1.0) | (markers[:, 0] == 1.0))
        # "In the rare case where the first pair of the sequence gets marked, we set X1 to
        # zero": a marked first pair whose partner is past the first ten steps is X1; X2 keeps
        # its value.
        assert np.all(values[marked[:, 0] & (positions[:, 1] >= 10), 0] == 0.0)
        x2_first.extend(values[marked[:, 0] & (positions[:, 1] < 10) & (values[:, 0] != 0), 0])
        assert np.all(markers[:, 1:-1] != -1.0)
        expected = 0.5 + (values * marked).sum(axis=1) / 4.0
        np.testing.assert_allclose(targets[:, 0], expected, rtol=1e-6)
    # Lengths are drawn per batch from the whole range.
    assert min(lengths) == 100 and max(lengths) == 110
    assert x2_first  # X2 on the first pair (about 1 sequence in 50) keeps its value.


def test_adding_1997_test_sequences_draw_their_own_lengths():
    task = tasks.AddingProblem(100, definition="1997")
    lengths = [x.shape[1] for x, _ in task.test_dataset().as_numpy_iterator()
               for _ in range(len(x))]
    assert len(lengths) == 2560 and lengths == sorted(lengths)
    counts = np.bincount(lengths)[100:]
    assert len(counts) == 11 and np.all(np.abs(counts - 2560 / 11) < 60)  # Uniform on 11.


def test_adding_1997_scores_the_fraction_of_sequences_off_by_0_04_or_more():
    task = tasks.AddingProblem(20, definition="1997")
    targets = tf.constant([[0.5], [0.5], [0.5]])
    predictions = tf.constant([[0.5], [0.539], [0.541]])
    np.testing.assert_array_equal(task.metric(targets, predictions).numpy(), [0.0, 0.0, 1.0])
    # The baseline: the fraction of test sequences that the constant guess 0.5 gets wrong.
    targets = np.concatenate([t for _, t in task.test_dataset().as_numpy_iterator()])
    assert len(targets) == 2560
    assert task.baseline == pytest.approx(np.mean(np.abs(targets - 0.5) >= 0.04))
    assert 0.8 < task.baseline < 0.9  # Most sums are not within 0.16 of zero.
    # The paper's criterion: its stop rule, then at most 1 wrong of 2,560 test sequences.
    assert task.is_solved(1 / 2560) and not task.is_solved(2 / 2560)
    assert task.stop_rule == tasks.StopRule(window=2000, wrong=0, error=0.01)


def test_the_stop_rule_reads_the_latest_window_of_sequences():
    rule = tasks.StopRule(window=4, wrong=1, error=0.01)
    right, errors = [1, 0, 0, 1, 0], [0.5, 0.0, 0.0, 0.02, 0.0]
    assert bool(rule.holds(right, errors))  # The first, wrong and far off, is out of the window.
    assert not bool(rule.holds(right[1:] + [1], errors[1:] + [0.0]))  # Two wrong.
    assert not bool(rule.holds(right, errors[:-1] + [0.03]))  # A mean error of 0.0125.
    assert not bool(rule.holds([0, 0, 0], [0.0, 0.0, 0.0]))  # Fewer than the window.
    assert bool(tasks.StopRule(window=2).holds([0, 0]))  # Without an error bound.


# --- Copy memory. ------------------------------------------------------------------------------

def test_copy_memory_matches_its_definition():
    gap = 30
    task = tasks.CopyMemory(gap)
    for inputs, targets in batches(task):
        assert inputs.shape == targets.shape == (64, gap + 20)
        assert inputs.dtype == targets.dtype == np.int32
        data = inputs[:, :10]
        assert np.all((data >= 0) & (data < 8))
        # T - 1 blanks, the delimiter, ten blanks.
        assert np.all(inputs[:, 10:gap + 9] == 8)
        assert np.all(inputs[:, gap + 9] == 9)
        assert np.all(inputs[:, gap + 10:] == 8)
        # T + 10 blanks, then the ten symbols in order.
        assert np.all(targets[:, :gap + 10] == 8)
        np.testing.assert_array_equal(targets[:, gap + 10:], data)


def test_copy_memory_baseline_is_the_score_of_a_memoryless_model():
    gap = 40
    task = tasks.CopyMemory(gap, test_size=64)
    # Blanks until the delimiter's echo, then a uniform guess over the eight data symbols.
    memoryless = np.zeros((64, gap + 20, 10), dtype=np.float32)
    memoryless[:, :gap + 10, 8] = 1.0
    memoryless[:, gap + 10:, :8] = 1 / 8
    _, targets = next(iter(task.test_dataset()))
    scores = task.metric(targets, tf.constant(memoryless)).numpy()
    assert task.baseline == pytest.approx(10 * math.log(8) / (gap + 20))
    np.testing.assert_allclose(scores, task.baseline, rtol=1e-4)
    assert task.is_solved(0.009 * task.baseline) and not task.is_solved(0.02 * task.baseline)


# --- The long-gap language task. ---------------------------------------------------------------

@pytest.mark.parametrize("filler", ["words", "distractors"])
@pytest.mark.parametrize("position", ["random", "fixed"])
def test_long_gap_sentences_say_where_and_ask_for_the_language(filler, position):
    gap = 25
    task = tasks.LongGap(gap, filler=filler, position=position)
    spread = 12 if position == "random" else 0
    countries = {task.ids(country)[0]: index for index, country in enumerate(task.countries)}
    distances = set()
    for inputs, targets in batches(task, count=5):
        assert inputs.shape == (64, 4 + 2 + gap + spread + 3) and targets.shape == (64,)
        for row, target in zip(inputs, targets):
            words = [task.vocabulary[token] for token in row]
            # The sentence starts within the first `spread` words: "i grew up in <country> .".
            starts = [i for i in range(spread + 1) if words[i:i + 4] == ["i", "grew", "up", "in"]]
            assert len(starts) == 1
            country = starts[0] + 4
            assert words[country + 1] == "." and words[-3:] == ["i", "speak", "fluent"]
            assert countries[row[country]] == target  # The language is the country's.
            distances.add(len(row) - 3 - (country + 2))
            others = [countries[token] for i, token in enumerate(row)
                      if token in countries and i != country]
            assert target not in others  # The rest never names the true country again.
            if filler == "words":
                assert others == []
    # Between `gap` and `gap + spread` words separate the sentence from the question.
    assert min(distances) >= gap and max(distances) <= gap + spread
    if position == "random":
        assert distances == set(range(gap, gap + spread + 1))
    if filler == "distractors":
        # Some sequences mention other countries: "we visited <country> .".
        inputs, _ = task.batch(0, tasks.TRAIN_STREAM, 0, 64)
        assert np.isin(inputs, list(countries)).sum() > 64 + 10


@pytest.mark.parametrize("position", ["random", "fixed"])
def test_every_distractor_sentence_is_whole(position):
    task = tasks.LongGap(7, position=position)  # Short filler: the last sentence is cut often.
    inputs, _ = task.batch(0, tasks.TRAIN_STREAM, 0, 512)
    seen = 0
    for row in inputs:
        words = [task.vocabulary[token] for token in row]
        for i, word in enumerate(words):
            if word == "visited":
                seen += 1
                assert words[i - 1] == "we" and words[i + 1] in task.countries, words
                assert words[i + 2] == ".", words
            if word == "we":
                assert words[i + 1] == "visited", words
    assert seen > 100


def one_call_at_a_time(task, rng, batch_size):
    """The long-gap batch as first written, each number drawn by its own call of `rng`: the
    definition `LongGap.make_batch` draws faster and must match exactly, or every committed
    long-gap result would change."""
    ids, filler_ids = task._ids, task._filler_ids

    def filler(country, length):
        if task.filler == "words":
            return filler_ids[rng.integers(0, len(filler_ids), size=length)]
        tokens = []
        while len(tokens) < length:
            left = length - len(tokens)
            if left >= 4 and rng.random() < 1 / 3:
                other = rng.choice([c for c in range(len(task.countries)) if c != country])
                tokens += [ids["we"], ids["visited"], ids[task.countries[other]], ids["."]]
            else:
                count = min(int(rng.integers(3, 8)), max(left - 1, 1))
                tokens += list(filler_ids[rng.integers(0, len(filler_ids), size=count)])
                if left > 1:
                    tokens.append(ids["."])
        return tokens

    inputs = np.zeros((batch_size, task.max_length), dtype=np.int32)
    targets = rng.integers(0, len(task.countries), size=batch_size)
    for row, country in enumerate(targets):
        before = int(rng.integers(0, task.spread + 1))
        after = task.gap + task.spread - before
        inputs[row] = [*filler(country, before), *task.ids("i grew up in"),
                       ids[task.countries[country]], ids["."], *filler(country, after),
                       *task.ids("i speak fluent")]
    return inputs, targets.astype(np.int32)


@pytest.mark.parametrize("filler", ["words", "distractors"])
@pytest.mark.parametrize("position", ["random", "fixed"])
@pytest.mark.parametrize("gap", [1, 2, 3, 10, 100])
def test_long_gap_batches_are_those_of_one_call_per_number(filler, position, gap):
    task = tasks.LongGap(gap, filler=filler, position=position)
    for seed in range(4):
        for batch_size in (1, 7, 64):
            fast, slow = (np.random.default_rng([seed, gap, batch_size]) for _ in range(2))
            inputs, targets = task.make_batch(fast, batch_size)
            expected_inputs, expected_targets = one_call_at_a_time(task, slow, batch_size)
            np.testing.assert_array_equal(inputs, expected_inputs)
            np.testing.assert_array_equal(targets, expected_targets)
            assert inputs.dtype == expected_inputs.dtype
            # And the generator is left where its own calls leave it.
            assert fast.bit_generator.state == slow.bit_generator.state
            assert fast.random() == slow.random()


def test_fast_draws_are_numpys_own():
    """Each kind of draw `LongGap` makes, against the call it stands for, in a random order
    that leaves a 32-bit half kept between calls, across chunks of raw outputs."""
    plan = np.random.default_rng(99)
    for seed in range(20):
        fast, slow = (np.random.default_rng(seed) for _ in range(2))
        slow.integers(0, 5)  # A half kept from before the draws start.
        fast.bit_generator.state = slow.bit_generator.state
        draws = tasks._Draws(fast)
        places, expected = [], []
        for _ in range(1500):
            kind = plan.integers(4)
            if kind == 0:
                assert draws.random() == slow.random()
            elif kind == 1:
                n = int(plan.choice([1, 2, 5, 7, 13, 3 * 2**30]))
                assert draws.integer(n) == slow.integers(0, n)
            elif kind == 2:
                size = int(plan.integers(0, 6))
                draws.places(size, places)
                expected += slow.integers(0, 32, size=size).tolist()
            else:
                n, size = int(plan.choice([8, 6])), int(plan.integers(0, 4))
                np.testing.assert_array_equal(draws.integers(n, size),
                                              slow.integers(0, n, size=size))
        np.testing.assert_array_equal(draws.bounded(places, 32), expected)
        draws.finish()
        assert fast.bit_generator.state == slow.bit_generator.state
    with pytest.raises(ValueError, match="only to a power of two, got 6"):
        draws.bounded([0], 6)
    with pytest.raises(ValueError, match="expected a Generator on PCG64.*MT19937"):
        tasks._Draws(np.random.Generator(np.random.MT19937(0)))


def test_the_task_reads_a_text_as_the_served_model_does():
    task = tasks.LongGap(10)
    assert task.ids("I grew up in France.") == task.ids("i grew up in france .")
    with pytest.raises(ValueError, match="'paris' not in the task's vocabulary"):
        task.ids("I grew up in Paris")


def test_long_gap_rejects_unknown_options():
    with pytest.raises(ValueError, match="`position` must be one of random, fixed"):
        tasks.LongGap(10, position="middle")
    with pytest.raises(ValueError, match="`filler` must be one of words, distractors"):
        tasks.LongGap(10, filler="lorem")


def test_long_gap_scores_wrong_languages_against_chance():
    task = tasks.LongGap(5)
    targets = tf.constant([0, 3, 7])
    predictions = tf.one_hot([0, 3, 1], 8)
    np.testing.assert_array_equal(task.metric(targets, predictions).numpy(), [0.0, 0.0, 1.0])
    assert task.baseline == pytest.approx(7 / 8)
    assert task.is_solved(0.04) and not task.is_solved(0.05)
    assert task.model_options == {"head": "sequence", "input_name": "tokens",
                                  "vocab_size": len(task.vocabulary), "num_classes": 8}


# --- What every task shares. -------------------------------------------------------------------

ALL_TASKS = [
    lambda **options: tasks.AddingProblem(40, **options),
    lambda **options: tasks.AddingProblem(40, definition="1997", **options),
    lambda **options: tasks.CopyMemory(12, **options),
    lambda **options: tasks.LongGap(15, **options),
    lambda **options: tasks.LongGap(15, filler="words", **options),
]


@pytest.mark.parametrize("make_task", ALL_TASKS)
def test_batches_are_determined_by_seed_and_index(make_task):
    task = make_task()
    first = task.batch(7, tasks.TRAIN_STREAM, 3, 16)
    again = make_task().batch(7, tasks.TRAIN_STREAM, 3, 16)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    other_seed = task.batch(8, tasks.TRAIN_STREAM, 3, 16)
    other_index = task.batch(7, tasks.TRAIN_STREAM, 4, 16)
    assert not np.array_equal(first[0], other_seed[0])
    assert not np.array_equal(first[0], other_index[0])


@pytest.mark.parametrize("make_task", ALL_TASKS)
def test_train_dataset_streams_fresh_batches_and_resumes_at_start(make_task):
    task = make_task()
    stream = list(task.train_dataset(16, seed=5).take(4).as_numpy_iterator())
    resumed = list(task.train_dataset(16, seed=5, start=2).take(2).as_numpy_iterator())
    for (x, y), (rx, ry) in zip(stream[2:], resumed):
        np.testing.assert_array_equal(x, rx)
        np.testing.assert_array_equal(y, ry)
    assert not np.array_equal(stream[0][0], stream[1][0])
    inputs, targets = stream[0]
    assert inputs.shape[0] == targets.shape[0] == 16
    assert task.input_spec.is_compatible_with(tf.constant(inputs))
    assert task.target_spec.is_compatible_with(tf.constant(targets))


@pytest.mark.parametrize("make_task", ALL_TASKS)
def test_test_split_is_fixed_and_sized(make_task):
    task = make_task(test_size=100, test_batch_size=32)
    first = list(task.test_dataset().as_numpy_iterator())
    second = list(make_task(test_size=100, test_batch_size=32).test_dataset().as_numpy_iterator())
    sizes = [len(targets) for _, targets in first]
    if task.draw_lengths(np.random.default_rng(0), 1) is None:
        assert sizes == [32, 32, 32, 4]
    else:  # Batches of one length each, at most 32.
        assert sum(sizes) == 100 and max(sizes) <= 32
    for (x, y), (x2, y2) in zip(first, second):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    # The test split is not a training batch.
    train_inputs, _ = task.batch(task.test_seed, tasks.TRAIN_STREAM, 0, 32)
    assert not np.array_equal(first[0][0], train_inputs)


@pytest.mark.parametrize("make_task, message", [
    (lambda: tasks.AddingProblem(0), "seq_len=0"),
    (lambda: tasks.AddingProblem(10, definition="1997"), "seq_len=10"),
    (lambda: tasks.AddingProblem(100, definition="1998"), "definition='1998'"),
    (lambda: tasks.CopyMemory(2.5), "seq_len=2.5"),
    (lambda: tasks.CopyMemory(10, test_size=0), "test_size=0"),
    (lambda: tasks.LongGap(0), "seq_len=0"),
    (lambda: tasks.LongGap(10, filler="noise"), "filler='noise'"),
])
def test_bad_task_arguments_raise_value_error_naming_them(make_task, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        make_task()


def test_bad_dataset_arguments_raise_value_error():
    with pytest.raises(ValueError, match="batch_size=0"):
        tasks.CopyMemory(5).train_dataset(0)
