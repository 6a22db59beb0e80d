"""Results: the reports, from the store's finished runs, by concern.

Numbers (no strings, no store unless said):

* :mod:`.stats` -- statistics on numbers (means, paired intervals, Holm, exact tests, divergence,
  the implementation-noise floor); no store, no experiment;
* :mod:`.selection` -- which lr of a declared sweep is best, and whether it sits at a grid edge;
* :mod:`.questions` -- the questions a headline answers;
* :mod:`.runs` -- the finished runs of the current specs (store), which diverged, completeness;
* :mod:`.compare` -- per-row summaries and paired comparisons with their kind and Holm verdicts;
* :mod:`.lr_grid` -- the cells of a declared lr sweep (``Experiment.lr_sweep``) and its robustness;
* :mod:`.families` -- the declared families of the index's questions, and the noise floor.

Words and figures:

* :mod:`.text` -- one number at a time becomes a string; :mod:`.wording` -- the reports' sentences;
* :mod:`.plots` -- figures (matplotlib, Agg);
* :mod:`.report` -- ``reports/EXP.md`` (its tables formatted there, at the edge), :mod:`.lr_report` --
  the sections of a declared lr sweep, :mod:`.index` -- ``reports/README.md``.

Nothing here names an experiment: an experiment declares its sweeps (``lr_sweep``), budget,
families and questions as data on its ``Experiment``. Nothing here imports the training stack
(sweep, runner): ``tests/test_results.py`` checks that in a fresh interpreter (the lr_find file's path
comes from the stdlib-only ``store.paths``); ``experiments`` and ``registry`` bring torch and fastai.
"""
