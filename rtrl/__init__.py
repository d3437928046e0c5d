"""rtrl: exact real-time recurrent learning for element-wise recurrent cells, and R2AC."""
from rtrl.cells import (ELSTM, DiagonalLRU, ElementwiseRNN, IndRNN, RecurrentState, StackedRNN, StackedState,
                        rtrl_segment)

__version__ = "0.2.0"
__all__ = ["ELSTM", "IndRNN", "DiagonalLRU", "ElementwiseRNN", "RecurrentState", "rtrl_segment", "StackedRNN",
           "StackedState"]
