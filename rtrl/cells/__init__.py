"""Element-wise recurrent cells and the exact RTRL engine."""
from rtrl.cells.base import LEARNING_MODES, ElementwiseRNN, RecurrentState
from rtrl.cells.cells import ELSTM, DiagonalLRU, IndRNN
from rtrl.cells.engine import METHODS, rtrl_segment

__all__ = ["ELSTM", "IndRNN", "DiagonalLRU", "ElementwiseRNN", "RecurrentState", "rtrl_segment",
           "LEARNING_MODES", "METHODS"]
