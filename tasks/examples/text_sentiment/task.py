"""Lexicon-based sentiment: word polarities, negation flips, intensifiers scale.

Every figure in the output is computed from the words of the input: the score is the mean
polarity of the sentiment words found; the confidence is the share of words that carried
sentiment, so a text with no sentiment words is "neutral" with confidence 0.
"""

from __future__ import annotations

import re
from typing import Any

from tasks.base.task_base import SimpleTask

POSITIVE = {
    "good": 1.0,
    "great": 1.5,
    "excellent": 2.0,
    "amazing": 2.0,
    "love": 1.5,
    "loved": 1.5,
    "like": 0.5,
    "liked": 0.5,
    "happy": 1.2,
    "wonderful": 1.8,
    "fantastic": 1.8,
    "nice": 0.8,
    "best": 1.5,
    "enjoy": 1.0,
    "enjoyed": 1.0,
    "pleased": 1.0,
    "brilliant": 1.8,
    "fine": 0.4,
    "recommend": 1.0,
    "perfect": 2.0,
    "beautiful": 1.5,
    "fast": 0.6,
    "helpful": 1.0,
}
NEGATIVE = {
    "bad": -1.0,
    "terrible": -2.0,
    "awful": -2.0,
    "hate": -1.8,
    "hated": -1.8,
    "poor": -1.0,
    "worst": -2.0,
    "sad": -1.0,
    "angry": -1.2,
    "boring": -1.0,
    "slow": -0.6,
    "broken": -1.2,
    "disappointing": -1.5,
    "disappointed": -1.5,
    "horrible": -2.0,
    "ugly": -1.2,
    "useless": -1.5,
    "annoying": -1.0,
    "waste": -1.2,
    "refund": -0.8,
    "crash": -1.2,
    "crashes": -1.2,
}
NEGATIONS = {"not", "no", "never", "n't", "nothing", "neither", "nor", "hardly", "without"}
INTENSIFIERS = {
    "very": 1.5,
    "really": 1.4,
    "extremely": 1.8,
    "so": 1.3,
    "too": 1.2,
    "quite": 1.1,
    "slightly": 0.6,
    "somewhat": 0.7,
    "barely": 0.4,
}
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|n't")


def tokenize(text: str) -> list[str]:
    text = text.lower().replace("n't", " n't")
    return WORD.findall(text)


def score_text(text: str) -> dict[str, Any]:
    words = tokenize(text)
    hits: list[float] = []
    for i, word in enumerate(words):
        polarity = POSITIVE.get(word) or NEGATIVE.get(word)
        if polarity is None:
            continue
        window = words[max(0, i - 3) : i]
        for w in reversed(window):
            if w in INTENSIFIERS:
                polarity *= INTENSIFIERS[w]
                break
        if any(w in NEGATIONS for w in window):
            polarity *= -0.7
        hits.append(polarity)
    score = sum(hits) / len(hits) if hits else 0.0
    label = "positive" if score > 0.15 else "negative" if score < -0.15 else "neutral"
    confidence = round(len(hits) / len(words), 3) if words else 0.0
    return {
        "sentiment": label,
        "score": round(score, 3),
        "confidence": confidence,
        "sentiment_words": len(hits),
        "word_count": len(words),
    }


class Task(SimpleTask):
    """Scores the ``text`` field of the input."""

    def process(self, input_data: dict[str, Any]) -> dict[str, Any]:
        self.report_progress(0.0, "tokenizing")
        result = score_text(input_data["text"])
        self.report_progress(1.0, "scored")
        return result
