"""Stems, recurrent cores and the R2AC agent network."""
from rtrl.models.agent import Agent, AgentOutput
from rtrl.models.cores import CORES, make_core
from rtrl.models.stems import STEMS, ImpalaResNetStem, MLPStem, NatureCNNStem, make_stem

__all__ = ["Agent", "AgentOutput", "CORES", "make_core", "STEMS", "ImpalaResNetStem", "MLPStem", "NatureCNNStem", "make_stem"]
