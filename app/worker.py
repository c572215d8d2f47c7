"""The one worker this process runs; imported only by the command line and ``dev``.

Faust's command line (``app.main()``) needs an app object; everything else receives the
parts it needs from ``app.faust_app.Worker``, never from here.
"""

from __future__ import annotations

from app.faust_app import Worker, load_runtime

worker = Worker(load_runtime())
app = worker.app

__all__ = ["app", "worker"]
