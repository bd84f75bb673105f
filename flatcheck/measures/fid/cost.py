"""What the fid measure computes (core.work): the shared samples' features (decoded batch by batch)
and, when the reference is not cached, the reference's."""

from __future__ import annotations

from ...core.work import RunShape, Work


def work(config, run: RunShape, net=None) -> list[Work]:
    if not run.fd:
        return []
    return [
        Work("fid: features", decodes=run.samples, features=run.samples + run.reference_images, batch=run.batch_size)
    ]
