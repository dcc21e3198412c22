"""The n-gram floor of the generation benchmark must be a proper distribution, or its bits mean nothing."""

import numpy as np
from helpers.benchmarks import benchmark

news_generation = benchmark("news_generation")


def test_kneser_ney_probabilities_sum_to_one_and_beat_uniform() -> None:
    rng = np.random.default_rng(0)
    vocabulary = 7
    text = np.array([rng.choice([1, 2, 3]) if i % 4 else 4 for i in range(3000)])  # a periodic token
    model = news_generation.KneserNey(order=4, vocabulary=vocabulary).fit(text)
    for context in ([4, 1, 2], [3, 3, 3], [6, 5, 0], [2], [5]):  # seen, rare and unseen histories
        candidates = np.array([[*context, token] for token in range(vocabulary)])
        total = sum(2 ** model.log2_probabilities(row)[-1] for row in candidates)
        assert abs(total - 1.0) < 1e-9, (context, total)
    held_out = np.array([rng.choice([1, 2, 3]) if i % 4 else 4 for i in range(400)])
    bits = -model.log2_probabilities(held_out).mean()
    assert bits < 0.8 * np.log2(3)  # learns that every fourth token is 4 (uniform over 1-3 would be 1.58)
