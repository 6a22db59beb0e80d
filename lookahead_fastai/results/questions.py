"""The questions a headline answers. An experiment declares which of its comparisons answer which
question (``Experiment.questions``: question id -> the comparisons, e.g. ``"tuned"``); the index
then shows one family per question: each comparison in it once, effect sizes with Holm-adjusted
p-values and Bonferroni-level intervals, a forest plot first, never a count of verdicts.

Selection (which lr is "best") is made by the caller before the family is formed (grid_rules: on
validation, and with stages on the tuning seeds), never here.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Question:
    key: str
    title: str
    short: str     # the forest plot's title
    scoring: str   # how every run of the family is scored, said in the report


LOOKAHEAD_VS_INNER = Question(
    "lookahead_vs_inner",
    "Lookahead against its inner optimizer, each at the best lr of its own sweep",
    "Lookahead − its inner optimizer, each at its sweep's best lr",
    "Lookahead is scored on its slow weights with BatchNorm statistics recomputed for them (the record's final "
    "validation, which such a run makes on the slow weights); the plain optimizer on its weights.")

QUESTIONS = {q.key: q for q in (LOOKAHEAD_VS_INNER,)}
