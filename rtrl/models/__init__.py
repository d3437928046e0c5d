"""Stems, recurrent cores behind one Core protocol, the model config and the R2AC agent network."""
from rtrl.models.agent import Agent, AgentOutput, sample_actions
from rtrl.models.config import (CELLS, CORE_ALIASES, ELEMENTWISE_CELLS, LEARNING, ModelConfig,
                                UNBOUNDED_OUTPUT_CELLS, norm_unbounded_outputs, refuse_unread_model_settings,
                                upgrade_core_alias, with_options)
from rtrl.models.cores import CORES, Core, FeedForwardCore, LSTMCore, LSTMState, NoState, make_core
from rtrl.models.normalizer import ObservationNormalizer, RewardScaler
from rtrl.models.stems import STEMS, ImpalaResNetStem, MLPStem, NatureCNNStem, make_stem

__all__ = ["Agent", "AgentOutput", "sample_actions", "ModelConfig", "with_options", "upgrade_core_alias",
           "refuse_unread_model_settings", "norm_unbounded_outputs", "UNBOUNDED_OUTPUT_CELLS", "CELLS",
           "ELEMENTWISE_CELLS", "LEARNING", "CORE_ALIASES", "CORES", "Core", "make_core", "LSTMCore", "LSTMState",
           "FeedForwardCore", "NoState", "ObservationNormalizer", "RewardScaler", "STEMS", "ImpalaResNetStem", "MLPStem",
           "NatureCNNStem", "make_stem"]
