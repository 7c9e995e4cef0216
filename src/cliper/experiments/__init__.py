"""The paper's experiments as reproducible, resumable grids of ordinary training runs.

``spec`` describes an experiment, ``plan`` turns it into run folders, ``runner`` trains
them through :mod:`cliper.training.runner` (skipping finished ones), and ``tables`` /
``plots`` / ``stats`` re-derive every report from the run folders. ``compare`` and
``ablation`` are the RQ1-RQ3 commands; ``view_importance`` is RQ4 (Figure 5).
"""

from cliper.experiments.spec import DatasetEntry, ExperimentSpec, load_spec, parse_spec

__all__ = ["DatasetEntry", "ExperimentSpec", "load_spec", "parse_spec"]
