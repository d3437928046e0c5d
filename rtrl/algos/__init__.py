"""V-trace and the IMPALA losses as pure functions of time-major (T, B) tensors."""
from rtrl.algos.distributions import (ActionDistribution, Categorical, DiagGaussian, MultiCategorical,
                                     sample_categorical)
from rtrl.algos.losses import (action_log_probs, baseline_loss, clipped_surrogate_loss, entropy_loss,
                               normalize_advantages, policy_gradient_loss)
from rtrl.algos.schedule import clip_rewards, linear_decay
from rtrl.algos.vtrace import VTraceReturns, vtrace
from rtrl.algos.impala import LossConfig, impala_loss

__all__ = [
    "ActionDistribution",
    "Categorical",
    "MultiCategorical",
    "DiagGaussian",
    "sample_categorical",
    "vtrace",
    "VTraceReturns",
    "action_log_probs",
    "policy_gradient_loss",
    "clipped_surrogate_loss",
    "baseline_loss",
    "entropy_loss",
    "normalize_advantages",
    "linear_decay",
    "clip_rewards",
    "impala_loss",
    "LossConfig",
]
