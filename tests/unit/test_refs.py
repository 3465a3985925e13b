"""Reference documents for outputs too large to travel inline."""

from __future__ import annotations

import json

from common import refs
from common.artifacts import digests_in

URI = "artifact://sha256/" + "a" * 64 + "/output_001.json"


def test_a_reference_round_trips() -> None:
    text = refs.make_ref(URI, 300_000)
    assert refs.text_ref_uri(text) == URI
    assert refs.ref_uri(json.loads(text)) == URI


def test_a_reference_text_is_at_most_300_characters() -> None:
    """Texts that long are not parsed to be looked at: a reference is far shorter."""
    base = refs.make_ref(URI, 1)
    name = "o" * (300 - len(base) + len("output_001"))
    longest = refs.make_ref(URI.replace("output_001", name), 1)
    assert len(longest) == 300 and refs.text_ref_uri(longest)
    assert refs.text_ref_uri(refs.make_ref(URI.replace("output_001", name + "o"), 1)) is None


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
    assert not refs.too_large("\U0001f600" * 25, 100)  # 25 characters, 100 bytes: the limit
    assert refs.too_large("\U0001f600" * 26, 100)  # 26 characters, 104 bytes
    assert not refs.too_large("x" * 10_000, 0)  # 0: no limit of its own...
    big = "x" * (refs.MAX_INLINE_BYTES + 1)  # ...but one stream message must carry it
    assert refs.too_large(big, 0) and refs.too_large(big, 2 * refs.MAX_INLINE_BYTES)


def test_a_record_names_the_digests_of_every_artifact_uri_in_it() -> None:
    """What the artifact sweep keeps: every URI anywhere in a JSON text, each digest once,
    also when an encoder escaped the slashes; nothing for text that names none."""
    a, b = "a" * 64, "b" * 64
    text = json.dumps(
        {"image": f"artifact://sha256/{a}/x.png", "more": [f"artifact://sha256/{b}/y.png"]}
    )
    assert digests_in(text) == [a, b]
    assert digests_in(text.replace("/", "\\/")) == [a, b]
    assert digests_in(refs.make_ref(f"artifact://sha256/{a}/out.json", 10)) == [a]
    assert digests_in(f'"artifact://sha256/{a}/x.png"') == [a]
    assert digests_in('{"n": 1}') == [] and digests_in("artifact: not JSON") == []
