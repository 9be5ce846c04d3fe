"""call_in_child: a call in a fresh process, its result or its error as the same C2SError."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pytest

from c2s_desktop.core.child_call import call_in_child
from c2s_desktop.core.errors import Cancelled, InputFileError


def test_result_comes_back() -> None:
    assert call_in_child(math.factorial, 20) == math.factorial(20)


def test_user_error_comes_back_as_the_same_type(tmp_path: Path) -> None:
    from c2s_desktop.core.dataset import open_dataset

    missing = tmp_path / "nope.h5ad"
    with pytest.raises(InputFileError) as info:
        call_in_child(open_dataset, missing)
    assert str(missing) in str(info.value.path) and info.value.message


def test_other_failures_are_runtime_errors() -> None:
    with pytest.raises(RuntimeError, match="ValueError"):
        call_in_child(math.sqrt, -1.0)


def test_cancel_ends_the_child() -> None:
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        call_in_child(time.sleep, 60, cancel=cancel)
    assert time.monotonic() - started < 30
