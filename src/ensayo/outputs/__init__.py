"""The outputs layer: what a model predicts. The category output (classes), auxiliary number targets and a
teacher's probabilities (distillation) learned beside it, and the text output (documents, tokenizers, token windows)."""

from ensayo.outputs.auxiliary import AUXILIARY, auxiliary_targets
from ensayo.outputs.category import UNKNOWN, CategoryOutput
from ensayo.outputs.teacher import TEACHER, TeacherProbabilities, distillation_loss
from ensayo.outputs.text import EOD, UNK, Spelling, Tokenizer, TokenWindows, documents

__all__ = ["AUXILIARY", "EOD", "TEACHER", "UNK", "UNKNOWN", "CategoryOutput", "Spelling", "TeacherProbabilities",
           "TokenWindows", "Tokenizer", "auxiliary_targets", "distillation_loss", "documents"]
