"""One detector shared by several streams, with batches made across them.

``SharedDetector`` wraps a detector for N stream pipelines.  Each stream's
inference stage calls ``infer(batch)``; a single server thread takes every
request waiting at that moment (up to ``max_batch`` images), runs the wrapped
detector's ``infer`` + ``postprocess`` once on the concatenated batch, and
hands each caller its own frames' ``Detections``.  Only requests of equal input shape share
a call (sources of different frame sizes get inputs of different shapes).  ``postprocess`` on the
stream side is then only a pass-through.  A failure in the shared call reaches
every waiting caller (and so surfaces as that stream's inference error).
"""
from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from dashtrack_core.detector import Batch, Detector
from dashtrack_core.records import Detections


def concat_batches(batches: Sequence[Batch]) -> Batch:
    """Stack preprocessed batches along the batch axis (numpy arrays or torch tensors)."""
    data = [b.data for b in batches]
    if isinstance(data[0], np.ndarray):
        stacked = np.concatenate(data, axis=0)
    else:
        import torch

        stacked = torch.cat(data, dim=0)
    return Batch(stacked, tuple(lb for b in batches for lb in b.letterboxes))


def _input_shape(batch: Batch) -> tuple:
    """The per-image shape of a preprocessed batch (channels, height, width)."""
    return tuple(batch.data.shape[1:])


@dataclass
class _Request:
    batch: Batch
    future: Future


class SharedDetector:
    """A ``Detector`` for several streams at once; see the module docstring."""

    def __init__(self, detector: Detector, max_batch: int = 8, gather_s: float = 0.002):
        self.detector = detector
        self.class_names = detector.class_names
        self.max_batch = max_batch
        # After the first request, wait this long for the other streams' frames so they
        # share the call (a batch on a GPU costs about what one image does).
        self.gather_s = gather_s
        self._pending: list[_Request] = []
        self._cond = threading.Condition()
        self._closed = False
        self.batch_sizes: list[int] = []            # images per shared call, for reports
        # As many server threads as the detector runs calls at once (its ``workers``).
        self._threads = [threading.Thread(target=self._serve, name=f"shared-inference-{i}", daemon=True)
                         for i in range(getattr(detector, "workers", 1))]
        for t in self._threads:
            t.start()

    def preprocess(self, images: Sequence[np.ndarray]) -> Batch:
        return self.detector.preprocess(images)

    def infer(self, batch: Batch) -> list[Detections]:
        request = _Request(batch, Future())
        with self._cond:
            if self._closed:
                raise RuntimeError("the shared detector is closed")
            self._pending.append(request)
            self._cond.notify_all()
        return request.future.result()

    def postprocess(self, raw: list[Detections], batch: Batch) -> list[Detections]:
        return raw

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        return self.infer(self.preprocess(images))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(5)

    def _take(self) -> list[_Request] | None:
        with self._cond:
            while True:
                while not self._pending and not self._closed:
                    self._cond.wait(0.1)
                if not self._pending:
                    return None
                if self.gather_s > 0 and sum(len(r.batch) for r in self._pending) < self.max_batch:
                    self._cond.wait(self.gather_s)
                if self._pending:        # another server thread may have taken them while this one waited
                    break
            # Only batches of the first request's input shape go together (each source has the
            # shape of its own frames); the others wait for the next call, in order.
            shape = _input_shape(self._pending[0].batch)
            taken, images = [], 0
            for request in list(self._pending):
                if taken and images + len(request.batch) > self.max_batch:
                    break
                if _input_shape(request.batch) == shape:
                    self._pending.remove(request)
                    taken.append(request)
                    images += len(request.batch)
            return taken

    def _serve(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            try:
                batch = concat_batches([r.batch for r in taken])
                dets = self.detector.postprocess(self.detector.infer(batch), batch)
                self.batch_sizes.append(len(batch))
            except BaseException as e:  # every caller gets the error, named by its own stage
                for r in taken:
                    r.future.set_exception(e)
                continue
            start = 0
            for r in taken:
                n = len(r.batch)
                r.future.set_result(dets[start:start + n])
                start += n
