"""The copy task (Irie, Gopalakrishnan & Schmidhuber, ICLR 2024, Sec. 4.1) as ``rtrl copy-task``.

Task. A pattern of L' random bits, L' uniform in 1..L, is shown; then L' blanks are shown and the
model must output the pattern. Every sequence is padded to length 2L::

    input   b_1 … b_L'  _ … _   P … P          (_ = blank, P = padding)
    target  _ … _       b_1 … b_L'  P … P
            |input phase|output phase|padding|

Vocabulary (token ids):  0 = bit 0,  1 = bit 1,  2 = blank,  3 = padding.
Inputs are one-hot over all four ids (``NUM_INPUT_TOKENS``); the read-out predicts the three
output classes 0, 1, blank (``NUM_CLASSES``). Padding is never a target.

Scoring: exactly the output phase (positions L'..2L'-1). A sequence is right when every one of its
L' output-phase predictions equals its bit (sequence accuracy, the main metric); bit accuracy is
the share of right output-phase predictions over all bits. Both bits count, unlike the paper's
released code, whose loss ignores target id 2 — in its vocabulary the bit "1" (docs/DESIGN.md §5).
``scoring="paper-code"`` reproduces the released code's layout, loss and score for comparison.

Loss: token cross-entropy averaged over the scored positions of an update. ``loss_on="sequence"``
(the default) scores every non-padding position, i.e. also "predict blank" during the input phase;
``loss_on="output"`` scores only the output phase.

Models: a ``cell`` (elstm, indrnn, lru, or the lstm) trained by a ``learning`` rule (rtrl or bptt), each
followed by a linear read-out to the three classes; the paper's three are lstm-bptt (torch.nn.LSTM),
elstm-bptt and elstm-rtrl (``rtrl.ELSTM``). BPTT models take one optimizer step per batch
of whole sequences. RTRL models learn fully online (``online``): B training sequences run side
by side, the cell is called with T=1 on every token and the optimizer steps after every token, with
the state and the RTRL sensitivities carried from the sequence's first token. ``full_sequence=True``
keeps the per-token RTRL calls but steps once per batch of whole sequences, like BPTT.

Modules: ``config`` (CopyTaskConfig, the settings), ``data`` (splits and encoding), ``scoring``
(score, loss masks), ``model`` (CopyModel, evaluate), ``online`` (the online RTRL loop),
``training`` (batched updates, the training loop, the run files). Usage::

    from rtrl.tasks.copy_task import CopyTaskConfig, train
    results = train(CopyTaskConfig(cell="elstm", learning="rtrl", length=10, out="runs/copy-10"))
"""
from rtrl.tasks.copy_task.config import (CELLS, DEFAULT_LR, DEVICES, LEARNING, LOSS_ON, MODELS, SCORING,
                                         CopyTaskConfig, check_config, default_lr)
from rtrl.tasks.copy_task.data import (BIT_0, BIT_1, BLANK, NUM_CLASSES, NUM_INPUT_TOKENS, PAD, SPLITS, CopyData,
                                       encode_sequence, make_splits, output_phase_mask, paper_code_view,
                                       save_splits, sequence_ends, sequence_order)
from rtrl.tasks.copy_task.model import CopyModel, evaluate, make_optimizer, optimizer_step
from rtrl.tasks.copy_task.online import online_updates
from rtrl.tasks.copy_task.scoring import check_scoring, loss_mask, score
from rtrl.tasks.copy_task.training import METRIC_FIELDS, batched_updates, plot_learning_curve, train

__all__ = [
    "CopyTaskConfig", "check_config", "CELLS", "LEARNING", "MODELS", "LOSS_ON", "SCORING", "DEVICES", "DEFAULT_LR",
    "default_lr",
    "BIT_0", "BIT_1", "BLANK", "PAD", "NUM_INPUT_TOKENS", "NUM_CLASSES", "SPLITS", "CopyData",
    "encode_sequence", "make_splits", "save_splits", "paper_code_view", "sequence_ends", "output_phase_mask",
    "sequence_order", "check_scoring", "loss_mask", "score", "CopyModel", "evaluate", "make_optimizer",
    "optimizer_step", "online_updates", "batched_updates", "train", "plot_learning_curve", "METRIC_FIELDS",
]
