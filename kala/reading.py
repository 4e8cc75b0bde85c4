"""Reading a character model of code: what its cells track, and how far its brackets reach.

Karpathy, Johnson & Fei-Fei (2015, "Visualizing and Understanding Recurrent Networks") trained
character LSTMs on Linux source and found single cells that follow long-range structure: one
counts how deep the brackets are, one is on inside quotes, one follows the position in the line.
They also scored the prediction of closing brackets by how far away the opening one is. This
module measures both on any model of `kala.text.CharLanguageModel`:

- `code_features(text)`: what a reader of Python source knows at every character (bracket
  depth, inside a string, indentation, position in the line), and `bracket_pairs(text)`.
- `run_over(model, task, text, pieces)`: the model's predictions over a long text, cut into
  `pieces` consecutive pieces, each read from a zero state with the state carried to its end.
- `cell_states(model, task, text, pieces)`: the state of every cell at every character, from
  `kala.cells.watch` (the cell state for an LSTM, the hidden state for the others).
- `correlations(states, features)`: Pearson's r of every cell with every feature.
- `closing_brackets(text, ids, probabilities, pairs)`: how often the model's most likely next
  character is the closing bracket that comes, by distance to its opening bracket.
"""

import keras
import numpy as np

from kala.cells import watch

FEATURES = {
    "bracket_depth": "how many brackets ((, [, {) are open, outside strings and comments",
    "inside_string": "1 inside a string literal (its quotes included), else 0",
    "indentation": "the number of spaces that begin the line",
    "column": "the position in the line (0 for its first character)",
}
OPENING, CLOSING = "([{", ")]}"
# Distances from an opening bracket to its closing one, in characters: the bins' lower ends.
DISTANCE_BINS = (1, 3, 6, 11, 21, 51, 101, 201, 501)


def _scan(text):
    """Bracket depth and string membership of every character of Python source, and the
    matched bracket pairs. Strings (with their prefixes' quotes, escapes and triple quotes) and
    comments hide their brackets; a closing bracket that matches nothing is left unmatched."""
    n = len(text)
    depth = np.zeros(n, np.int32)
    inside = np.zeros(n, np.int32)
    pairs, stack = [], []
    quote, comment, i = None, False, 0
    while i < n:
        char, start = text[i], i
        if comment:
            comment = char != "\n"
            i += 1
        elif quote:
            if char == "\\":
                i += 2                                       # The escaped character too.
            elif text.startswith(quote, i):
                i += len(quote)
                quote = None
            else:
                if char == "\n" and len(quote) == 1:         # An unterminated one-line string.
                    quote = None
                i += 1
            inside[start:i] = 1
        elif char in "'\"":
            quote = char * 3 if text.startswith(char * 3, i) else char
            i += len(quote)
            inside[start:i] = 1
        else:
            if char == "#":
                comment = True
            elif char in OPENING:
                stack.append(i)
            elif char in CLOSING and stack and text[stack[-1]] == OPENING[CLOSING.index(char)]:
                pairs.append((stack.pop(), i))
            i += 1
        depth[start:i] = len(stack)
    return depth, inside, np.array(pairs, np.int64).reshape(-1, 2)


def code_features(text):
    """What a reader of Python source knows at each character of `text`: a dict from the names
    of `FEATURES` to float arrays of `len(text)`. A line's newline belongs to the line."""
    depth, inside, _ = _scan(text)
    indentation = np.zeros(len(text), np.int32)
    column = np.zeros(len(text), np.int32)
    start = 0
    for line in text.split("\n"):
        end = min(start + len(line) + 1, len(text))
        column[start:end] = np.arange(end - start)
        indentation[start:end] = len(line) - len(line.lstrip(" "))
        start = end
    return {"bracket_depth": depth.astype(np.float64), "inside_string": inside.astype(np.float64),
            "indentation": indentation.astype(np.float64), "column": column.astype(np.float64)}


def bracket_pairs(text):
    """The matched brackets of Python source outside strings and comments: an int array of
    shape (N, 2), each row the positions of an opening bracket and of its closing one."""
    return _scan(text)[2]


def _pieces(task, text, pieces):
    """`text` as ids cut into `pieces` consecutive pieces of equal length (the rest dropped)."""
    if not isinstance(pieces, int) or pieces < 1:
        raise ValueError(f"`pieces` must be a positive integer. Received: pieces={pieces!r}")
    length = len(text) // pieces
    if length < 2:
        raise ValueError(f"A text of {len(text):,} characters cannot be cut into {pieces} pieces "
                         "of at least 2 characters.")
    ids = task.encode(text[:pieces * length]).numpy()
    return ids.reshape(pieces, length)


def run_over(model, task, text, pieces=16):
    """The model's next-character distributions over `text`, read as `pieces` consecutive
    pieces, each from a zero state.

    Returns:
        `(ids, probabilities)`: ids of shape (pieces, L) and probabilities of shape
        (pieces, L, V), where `probabilities[p, t]` is the distribution of the character after
        `ids[p, t]`. The text's last `len(text) % pieces` characters are dropped.
    """
    ids = _pieces(task, text, pieces)
    # One call on the whole batch: `model.predict` would trace a function per model.
    probabilities = keras.ops.convert_to_numpy(model(ids, training=False))
    return ids, probabilities


def cell_states(model, task, text, pieces=8):
    """The state of every cell of the model's first recurrent layer after each character of
    `text` (cut as in `run_over`): the cell state c for the LSTMs, the hidden state h for the
    other cells. A float array of shape (pieces, L, H)."""
    values = watch(model, _pieces(task, text, pieces))
    return values["cell"] if "cell" in values else values["hidden"]


def correlations(states, features):
    """Pearson's r of every cell with every feature, over all characters: `states` of shape
    (..., H) and `features` a dict of arrays of the states' leading shape. Returns a dict from
    feature names to arrays of H correlations (0 for a cell or feature that never changes)."""
    states = np.asarray(states, np.float64).reshape(-1, np.shape(states)[-1])
    centred = states - states.mean(axis=0)
    norms = np.sqrt((centred ** 2).sum(axis=0))
    result = {}
    for name, values in features.items():
        values = np.asarray(values, np.float64).ravel()
        if values.shape[0] != states.shape[0]:
            raise ValueError(f"Feature {name!r} has {values.shape[0]:,} values; the states have "
                             f"{states.shape[0]:,} characters.")
        values = values - values.mean()
        denominator = norms * np.sqrt((values ** 2).sum())
        result[name] = np.divide(centred.T @ values, denominator,
                                 out=np.zeros(states.shape[1]), where=denominator > 0)
    return result


def closing_brackets(text, ids, probabilities, bins=DISTANCE_BINS):
    """How well the model foresees each closing bracket, by distance to its opening bracket.

    A closing bracket is counted when it and its opening bracket lie in the same piece (so the
    model has read both) and it is not a piece's first character. It is predicted when the
    model's most likely next character, before it, is that bracket.

    Args:
        text: the text given to `run_over`.
        ids, probabilities: what `run_over` returned for it.
        bins: the lower ends of the distance bins, increasing.

    Returns:
        A list with one dict per bin that holds brackets: `distance_from`, `distance_to` (None
        for the last bin), `count`, `accuracy` (the fraction predicted) and `mean_probability`
        (the probability given to the bracket that came).
    """
    pieces, length = ids.shape
    pairs = bracket_pairs(text)
    opening, closing = pairs[:, 0], pairs[:, 1]
    keep = (closing < pieces * length) & (opening // length == closing // length) \
        & (closing % length > 0)
    opening, closing = opening[keep], closing[keep]
    piece, place = closing // length, closing % length
    before = probabilities[piece, place - 1]                          # (N, V)
    came = ids[piece, place]
    predicted = before.argmax(axis=-1) == came
    probability = before[np.arange(len(came)), came]
    distance = closing - opening
    rows = []
    for index, low in enumerate(bins):
        high = bins[index + 1] - 1 if index + 1 < len(bins) else None
        chosen = (distance >= low) & (True if high is None else distance <= high)
        if chosen.any():
            rows.append({"distance_from": int(low), "distance_to": high,
                         "count": int(chosen.sum()),
                         "accuracy": float(predicted[chosen].mean()),
                         "mean_probability": float(probability[chosen].mean())})
    return rows


def bits_per_char(ids, probabilities):
    """Bits per character of the predictions `run_over` made (every character but each piece's
    first)."""
    came = ids[:, 1:]
    chosen = np.take_along_axis(probabilities[:, :-1], came[..., None], axis=-1)[..., 0]
    return float(-np.mean(np.log2(np.maximum(chosen, 1e-12))))


def read_model(model, untrained, task, bracket_pieces=16, cell_characters=32_000, cell_pieces=8):
    """What a trained character model of code does with the long-range structure of its task's
    validation text, next to the same network before training (`untrained`):

    - `carried_state_bits_per_char` and `closing_brackets`: the validation text read in
      `bracket_pieces` pieces with the state carried through each (training reads short
      windows), and how often the most likely next character is the closing bracket that comes,
      by the distance back to its opening bracket;
    - `readable_cells`: for each feature of `FEATURES`, read on the first `cell_characters` of
      the validation text in `cell_pieces` pieces, the cell whose state correlates best with
      it, its r, and the best |r| among the untrained network's cells.

    A short text is read in fewer pieces, each of at least 2 characters. Returns that dict and,
    for drawing, the cells' states over the text they were read on, and that text.
    """
    text = task.validation_text
    bracket_pieces = min(bracket_pieces, len(text) // 2)
    ids, probabilities = run_over(model, task, text, bracket_pieces)
    cell_text = text[:cell_characters]
    cell_pieces = min(cell_pieces, len(cell_text) // 2)
    features = code_features(cell_text[:len(cell_text) // cell_pieces * cell_pieces])
    states = cell_states(model, task, cell_text, cell_pieces)
    trained = correlations(states, features)
    before = correlations(cell_states(untrained, task, cell_text, cell_pieces), features)
    cells = {}
    for name in FEATURES:
        best = int(np.argmax(np.abs(trained[name])))
        cells[name] = {"cell": best, "r": float(trained[name][best]),
                       "untrained_best_abs_r": float(np.max(np.abs(before[name])))}
    reading = {
        "carried_state_pieces": bracket_pieces,
        "carried_state_bits_per_char": bits_per_char(ids, probabilities),
        "closing_brackets": closing_brackets(text, ids, probabilities),
        "readable_cells": cells,
    }
    return reading, states, cell_text
