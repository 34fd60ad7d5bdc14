"""Overlapping the CPU stages of image ingestion: the next item is made in a thread while the caller
works on the current one (``service.ingest.loader.embed_photos`` reads and decodes the next batch of
photos while the current one is encoded).

Decoding (PIL) releases the GIL, so it runs beside ONNX Runtime's inference instead of before it.
One item ahead only: decoded photos are large, and one step ahead is enough to hide them.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def one_ahead(make: Callable[[T], R], items: Iterable[T], *, name: str = "prefetch") -> Iterator[R]:
    """``make(item)`` for each item in order; while the caller holds one result, the next is being made."""
    items = list(items)
    if not items:
        return
    with ThreadPoolExecutor(1, thread_name_prefix=name) as pool:
        ahead = pool.submit(make, items[0])
        for k in range(len(items)):
            result = ahead.result()
            if k + 1 < len(items):
                ahead = pool.submit(make, items[k + 1])
            yield result
