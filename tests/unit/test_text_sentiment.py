"""The text_sentiment example, run in-process through the task kit's loader."""

from __future__ import annotations

import json

import pytest

from tasks.base.runtime import load_task, run_once
from tests.conftest import EXAMPLES

LABELLED = [
    ("I love this, it is wonderful", "positive"),
    ("This is really great and very helpful", "positive"),
    ("Absolutely terrible, the worst purchase ever", "negative"),
    ("It crashes and it is slow and annoying", "negative"),
    ("The box is on the table", "neutral"),
    ("This is not good", "negative"),
    ("I don't hate it", "positive"),
    ("not bad at all", "positive"),
]


@pytest.fixture(scope="module")
def task():  # noqa: ANN201
    t = load_task(EXAMPLES / "text_sentiment")
    t.setup()
    return t


@pytest.mark.parametrize(("text", "label"), LABELLED)
def test_labelled_examples(task, text: str, label: str) -> None:  # noqa: ANN001
    verdict, payload = run_once(task, json.dumps({"text": text}))
    assert verdict == "ok"
    assert json.loads(payload)["sentiment"] == label


def test_intensifiers_scale_the_score(task) -> None:  # noqa: ANN001
    plain = json.loads(run_once(task, '{"text": "good"}')[1])["score"]
    strong = json.loads(run_once(task, '{"text": "very good"}')[1])["score"]
    assert strong > plain > 0


def test_text_without_sentiment_words_has_zero_confidence(task) -> None:  # noqa: ANN001
    out = json.loads(run_once(task, '{"text": "the cat sat on the mat"}')[1])
    assert out == {
        "sentiment": "neutral",
        "score": 0.0,
        "confidence": 0.0,
        "sentiment_words": 0,
        "word_count": 6,
    }


def test_missing_text_is_a_fatal_error_naming_the_field(task) -> None:  # noqa: ANN001
    verdict, payload = run_once(task, '{"txt": "hello"}')
    assert verdict == "fatal"
    assert "'text'" in payload
