"""The credentials every call carries (common.client_core): what a gRPC header cannot hold is
refused by name before any call, in the SDK, the CLI and the gateway alike."""

from __future__ import annotations

import pytest

from common.client_core import NAMESPACE_HEADER, call_metadata
from common.errors import InvalidArgument, Unauthenticated


def test_the_key_and_the_namespace_become_headers() -> None:
    assert call_metadata("wtm_1.abc", "team-a") == (
        ("authorization", "Bearer wtm_1.abc"),
        (NAMESPACE_HEADER, "team-a"),
    )
    assert call_metadata() == ()


@pytest.mark.parametrize("key", ["wtm_ü", "wtm_1.abc\n", "\x00"])
def test_a_key_no_header_can_carry_is_unauthenticated_by_name(key: str) -> None:
    with pytest.raises(Unauthenticated) as err:
        call_metadata(key)
    assert err.value.field == "api_key" and key not in err.value.message  # never echoed


def test_a_namespace_no_header_can_carry_is_invalid_by_name() -> None:
    with pytest.raises(InvalidArgument, match="namespace: 'équipe' is not a namespace name"):
        call_metadata("wtm_1.abc", "équipe")
