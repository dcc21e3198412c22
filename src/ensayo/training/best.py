"""Which way a metric improves: what early stopping, checkpoints and study reports compare by."""


def higher_is_better(metric: str) -> bool:
    return not metric.endswith(("loss", "perplexity", "bits_per_char"))
