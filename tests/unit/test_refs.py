"""Reference documents for outputs too large to travel inline."""

from __future__ import annotations

import json

from common import refs

URI = "artifact://sha256/" + "a" * 64 + "/output_001.json"


def test_a_reference_round_trips() -> None:
    text = refs.make_ref(URI, 300_000)
    assert refs.text_ref_uri(text) == URI
    assert refs.ref_uri(json.loads(text)) == URI


def test_an_ordinary_document_is_not_a_reference() -> None:
    assert refs.ref_uri({"wtm_ref": "s3://elsewhere", "bytes": 1}) is None
    assert refs.ref_uri({"wtm_ref": URI, "bytes": 1, "more": True}) is None
    assert refs.ref_uri([URI]) is None
    assert refs.text_ref_uri('{"values": [1, 2, 3]}') is None
    assert refs.text_ref_uri('{"wtm_ref": ') is None


def test_only_texts_over_the_limit_are_too_large() -> None:
    assert refs.too_large("x" * 101, 100)
    assert not refs.too_large("x" * 100, 100)
    assert refs.too_large("é" * 60, 100)  # 120 bytes in UTF-8
    assert not refs.too_large("x" * 10_000, 0)  # 0: no limit of its own...
    big = "x" * (refs.MAX_INLINE_BYTES + 1)  # ...but one stream message must carry it
    assert refs.too_large(big, 0) and refs.too_large(big, 2 * refs.MAX_INLINE_BYTES)
