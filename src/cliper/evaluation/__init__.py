"""Full-ranking evaluation, kept outside the models."""

from cliper.evaluation.evaluator import Evaluator
from cliper.evaluation.metrics import METRICS, parse_metric

__all__ = ["Evaluator", "METRICS", "parse_metric"]
