"""Element-wise recurrent cells and the exact RTRL engine."""
from rtrl.cells.base import LEARNING_MODES, ElementwiseRNN, project_parameters, recurrence_parameters
from rtrl.cells.cells import ELSTM, DiagonalLRU, IndRNN, chrono_forget_bias
from rtrl.cells.complex_cells import RTU, ComplexLRU
from rtrl.cells.engine import FINAL_SENSITIVITY, METHODS, rtrl_segment
from rtrl.cells.stacked import (CELL_TYPES, MULTILAYER, STACK_LEARNING, SensitivityMemoryError, StackedRNN, StackedState,
                                available_memory)
from rtrl.cells.state import RecurrentState

__all__ = ["ELSTM", "RTU", "ComplexLRU", "chrono_forget_bias", "IndRNN", "DiagonalLRU", "ElementwiseRNN", "project_parameters",
           "recurrence_parameters", "RecurrentState", "rtrl_segment",
           "LEARNING_MODES", "METHODS", "FINAL_SENSITIVITY", "StackedRNN", "StackedState", "SensitivityMemoryError",
           "CELL_TYPES", "MULTILAYER", "STACK_LEARNING", "available_memory"]
