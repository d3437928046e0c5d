"""Stems, recurrent cores behind one Core protocol, and the R2AC agent network."""
from rtrl.models.agent import Agent, AgentOutput, sample_actions
from rtrl.models.cores import CORES, Core, FeedForwardCore, LSTMCore, LSTMState, NoState, make_core
from rtrl.models.normalizer import ObservationNormalizer
from rtrl.models.stems import STEMS, ImpalaResNetStem, MLPStem, NatureCNNStem, make_stem

__all__ = ["Agent", "AgentOutput", "sample_actions", "CORES", "Core", "make_core", "LSTMCore", "LSTMState", "FeedForwardCore",
           "NoState", "ObservationNormalizer", "STEMS", "ImpalaResNetStem", "MLPStem", "NatureCNNStem", "make_stem"]
