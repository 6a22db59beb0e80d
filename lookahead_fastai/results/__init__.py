"""Results: what the reports compute and say, from numbers only.

* :mod:`.stats` -- statistics on numbers (means, paired intervals, Holm, exact tests, divergence,
  the implementation-noise floor); no strings, no store, no experiment;
* :mod:`.text` -- the only place numbers become strings;
* :mod:`.plots` -- figures (matplotlib, Agg);
* :mod:`.questions` -- the questions a headline answers, and the effects of a declared family.

Nothing here names an experiment (experiments declare their families and questions as data) and
nothing imports the training stack (sweep, runner, fastai, torch): ``tests/test_results.py`` checks
that in a fresh interpreter. ``lookahead_fastai.report`` reads the store and the experiments and
hands numbers to this package.
"""
