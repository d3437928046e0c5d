"""rtrl: exact real-time recurrent learning for element-wise recurrent cells, and R2AC.

The cells are imported when first used (``rtrl.ELSTM``), so that ``import rtrl`` is light: the command line
installs its signal handlers before torch is imported (``rtrl.cli.early``).
"""
__version__ = "0.2.0"
__all__ = ["ELSTM", "IndRNN", "DiagonalLRU", "RTU", "ComplexLRU", "ElementwiseRNN", "RecurrentState", "rtrl_segment",
           "StackedRNN", "StackedState", "project_parameters"]


def __getattr__(name: str):
    if name in __all__:
        import rtrl.cells
        return getattr(rtrl.cells, name)
    raise AttributeError(f"module 'rtrl' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
