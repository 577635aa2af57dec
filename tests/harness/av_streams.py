"""Every video stream PyAV opens, kept to be read back after the code under test closed its
container: the codec context's settings (threads) survive the close."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

import av

if TYPE_CHECKING:
    from collections.abc import Callable

    import pytest


class _Recorded:
    """An output container that hands back what it is asked for, keeping the streams it adds."""

    def __init__(self, container: Any, streams: list[Any]) -> None:
        self._container, self._streams = container, streams

    def __enter__(self) -> Self:
        self._container.__enter__()
        return self

    def __exit__(self, *exc: object) -> Any:
        return self._container.__exit__(*exc)

    def add_stream(self, *args: Any, **kwargs: Any) -> Any:
        stream = self._container.add_stream(*args, **kwargs)
        self._streams.append(stream)
        return stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)


def record_opened_streams(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Make `av.open` keep the first video stream of every container it opens, until the test ends."""
    streams: list[Any] = []
    real_open: Callable[..., Any] = av.open

    def recording_open(*args: Any, **kwargs: Any) -> Any:
        container = real_open(*args, **kwargs)
        if kwargs.get("mode") == "w":
            return _Recorded(container, streams)
        streams.extend(container.streams.video[:1])
        return container

    monkeypatch.setattr(av, "open", recording_open)
    return streams
