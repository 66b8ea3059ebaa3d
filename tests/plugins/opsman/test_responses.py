"""The pure half of the transport: Server-Sent Events of the installation log stream (no network)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from opsman.responses import sse_events


def events(*lines: bytes) -> list[tuple[str, str]]:
    """What ``sse_events`` makes of a stream that delivers ``lines`` one at a time, as aiohttp does."""

    async def stream() -> AsyncIterator[bytes]:
        for line in lines:
            yield line

    async def collect() -> list[tuple[str, str]]:
        return [event async for event in sse_events(stream())]

    return asyncio.run(collect())


def test_log_lines_are_unnamed_events():
    assert events(b"data: Installing\n", b"\n", b"data: Done\n", b"\n") == [("", "Installing"), ("", "Done")]


def test_a_named_event_keeps_its_name_and_data():
    assert events(b"event: exit\n", b'data: {"code": 0}\n', b"\n") == [("exit", '{"code": 0}')]


def test_data_lines_of_one_event_are_joined_by_newlines():
    assert events(b"data: one\n", b"data: two\n", b"\n") == [("", "one\ntwo")]


def test_one_space_after_the_colon_is_the_separator_and_more_is_data():
    assert events(b"data:tight\n", b"\n", b"data:   indented\n", b"\n") == [("", "tight"), ("", "  indented")]


def test_crlf_line_ends_are_accepted():
    assert events(b"event: step_info\r\n", b"data: x\r\n", b"\r\n") == [("step_info", "x")]


@pytest.mark.parametrize("line", [b": keep-alive\n", b"id: 7\n", b"retry: 3000\n"])
def test_comments_and_unused_fields_are_skipped(line):
    assert events(line, b"data: kept\n", line, b"\n") == [("", "kept")]


def test_blank_lines_without_an_event_yield_nothing():
    assert events(b"\n", b"\n", b"data: x\n", b"\n", b"\n") == [("", "x")]


def test_an_event_cut_off_by_the_end_of_the_stream_is_dropped():
    assert events(b"data: complete\n", b"\n", b"data: cut off\n") == [("", "complete")]


def test_an_event_name_does_not_carry_over_to_the_next_event():
    assert events(b"event: step_info\n", b"data: a\n", b"\n", b"data: b\n", b"\n") == [
        ("step_info", "a"),
        ("", "b"),
    ]


def test_bytes_that_are_not_utf8_are_replaced_not_fatal():
    assert events(b"data: caf\xe9\n", b"\n") == [("", "caf\ufffd")]
