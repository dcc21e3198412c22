"""The outputs layer: what a model predicts. The category output (classes), auxiliary number targets and a
teacher's probabilities (distillation) learned beside it, and the text output (documents, tokenizers, token windows).
Names are imported on first use: the classes of a category output (which the metrics read) need no torch."""

from ensayo.lazy import exports

_EXPORTS = {
    "AUXILIARY": "ensayo.outputs.auxiliary", "auxiliary_targets": "ensayo.outputs.auxiliary",
    "UNKNOWN": "ensayo.outputs.category", "CategoryOutput": "ensayo.outputs.category",
    "TEACHER": "ensayo.outputs.teacher", "TeacherProbabilities": "ensayo.outputs.teacher",
    "distillation_loss": "ensayo.outputs.teacher",
    "EOD": "ensayo.outputs.text", "UNK": "ensayo.outputs.text", "Spelling": "ensayo.outputs.text",
    "Tokenizer": "ensayo.outputs.text", "TokenWindows": "ensayo.outputs.text", "documents": "ensayo.outputs.text",
}
__all__ = sorted(_EXPORTS)
__getattr__ = exports(__name__, _EXPORTS)
