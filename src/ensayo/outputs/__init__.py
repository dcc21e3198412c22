"""The outputs layer: what a model predicts. The category output (classes), auxiliary number targets
learned beside it, and the text output (documents, tokenizers, token windows)."""

from ensayo.outputs.auxiliary import AUXILIARY, auxiliary_targets
from ensayo.outputs.category import UNKNOWN, CategoryOutput
from ensayo.outputs.text import EOD, UNK, Spelling, Tokenizer, TokenWindows, documents

__all__ = ["AUXILIARY", "EOD", "UNK", "UNKNOWN", "CategoryOutput", "Spelling", "TokenWindows", "Tokenizer",
           "auxiliary_targets", "documents"]
