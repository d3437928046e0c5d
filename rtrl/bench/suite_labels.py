"""The agents of the memory suite, by label: what each label trains, and with which preset.

A label names an agent — (cell, learning, num_layers, multilayer) — in the spelling of
``ModelConfig.label`` (``rtrl-rtu``, ``2x-exact-rtrl-elstm``); the four labels from before this vocabulary
(``rtrl-elstm``, ``tbptt-elstm``, ``lstm``, ``ff``: ``models.config.CORE_ALIASES``) keep their names and
their settings (``core=LABEL``), so the runs and records already made under them stay finished runs.

One training configuration per cell family: a run of a label trains with the suite's preset (``memory-suite``),
or with ``PRESET-CELL`` (``memory-suite-rtu``, ``memory-suite-clru``) where the cell's family has one
(``rtrl.runtime.config.PRESETS``: the same settings with the hidden size that gives the eLSTM's parameter
count). The 2-layer exact eLSTM is the eLSTM's family: ``memory-suite`` at N = 128, whose sensitivities
(~10.5 MiB per environment on the suite's largest input, O(N^3)) fit the memory check with room to spare.
"""
from __future__ import annotations

from dataclasses import dataclass

from rtrl.models.config import CORE_ALIASES, ModelConfig
from rtrl.runtime.config import PRESETS
from rtrl.settings import SettingError, literal


@dataclass(frozen=True)
class SuiteAgent:
    cell: str
    learning: str
    num_layers: int = 1
    multilayer: str = "exact"

    @property
    def label(self) -> str:
        return ModelConfig(cell=self.cell, learning=self.learning, num_layers=self.num_layers,
                           multilayer=self.multilayer).label


# the old labels are the CORE_ALIASES, kept as they were spelled
OLD_LABELS = {label: SuiteAgent(cell, learning) for label, (cell, learning) in CORE_ALIASES.items()}
NEW_AGENTS = (SuiteAgent("rtu", "rtrl"), SuiteAgent("rtu", "tbptt"), SuiteAgent("clru", "rtrl"),
              SuiteAgent("clru", "tbptt"), SuiteAgent("elstm", "rtrl", num_layers=2, multilayer="exact"))
AGENTS: dict[str, SuiteAgent] = dict(OLD_LABELS, **{agent.label: agent for agent in NEW_AGENTS})


def agent(label: str) -> SuiteAgent:
    if label not in AGENTS:
        raise SettingError(literal(f"unknown suite label {label!r}; accepted: {', '.join(AGENTS)}"))
    return AGENTS[label]


def label_settings(label: str) -> dict:
    """The training settings a label sets for its runs: ``core`` for an old label (as its records hold it),
    else ``cell`` and ``learning`` (and ``num_layers``, ``multilayer`` for a stack)."""
    if label in OLD_LABELS:
        return {"core": label}
    chosen = agent(label)
    settings = {"cell": chosen.cell, "learning": chosen.learning}
    if chosen.num_layers > 1:
        settings.update(num_layers=chosen.num_layers, multilayer=chosen.multilayer)
    return settings


def label_preset(label: str, base: str) -> str:
    """The preset of a label's runs: ``BASE-CELL`` when the cell's family has one, else ``base``."""
    family = f"{base}-{agent(label).cell}"
    return family if family in PRESETS else base


def cell_of(label: str) -> str:
    return agent(label).cell
