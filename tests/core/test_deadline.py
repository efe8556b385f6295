"""plc.deadline.call_within: the result, the error, or TooSlow once the time is out."""

from __future__ import annotations

import threading

import pytest

from plc.deadline import TooSlow, call_with_client, call_within


def test_the_result_or_the_error_of_a_call_in_time() -> None:
    assert call_within(lambda: 42, 5) == 42
    with pytest.raises(KeyError, match="gone"):
        call_within(lambda: {}["gone"], 5)


def test_a_call_out_of_time_is_left_to_its_thread() -> None:
    release = threading.Event()
    with pytest.raises(TooSlow, match="no answer within 0.2 s"):
        call_within(lambda: release.wait(30), 0.2, name="left-behind")
    left = [t for t in threading.enumerate() if t.name == "left-behind"]
    assert left and all(t.daemon for t in left)  # cannot keep the process from exiting
    release.set()


def test_a_client_whose_call_ran_out_of_time_is_closed() -> None:
    class Client:
        def __init__(self) -> None:
            self.closed = threading.Event()

        def close(self) -> None:
            self.closed.set()

    quick, slow = Client(), Client()
    assert call_with_client(quick, lambda client: client is quick, 5)
    assert not quick.closed.is_set()
    with pytest.raises(TooSlow):
        call_with_client(slow, lambda client: client.closed.wait(30), 0.2)
    assert slow.closed.wait(5)  # closing ends the call left behind
