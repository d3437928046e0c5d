"""Evaluation: episodes from a zero state (``episodes``), the paper's protocols (``protocols``), the
published score tables (``scores``), videos (``video``) and ``evaluate``, which ties them together."""
from rtrl.eval.evaluation import EvalConfig, evaluate

__all__ = ["EvalConfig", "evaluate"]
