"""The request id (app.observe.logs.request_id_from): the caller's when it is
a plain token, else a new random UUID in hex, as `uuid.uuid4().hex` writes it."""

from __future__ import annotations

import uuid

from app.observe.logs import request_id_from


def test_a_new_id_is_a_random_uuid4_in_hex() -> None:
    made = {request_id_from(None) for _ in range(2000)}
    assert len(made) == 2000
    for text in made:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert parsed.hex == text and len(text) == 32


def test_a_plain_given_id_is_kept_and_anything_else_replaced() -> None:
    assert request_id_from("lb-1234.abcd") == "lb-1234.abcd"
    for hostile in ("", "a b", "x" * 65, "<script>"):
        assert len(request_id_from(hostile)) == 32
