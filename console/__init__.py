"""The web console: server-rendered pages over the tag store, the catalogue and the models.

Mounted by the ``tagsmith`` wiring into the tag service's process at ``/ui`` (same keys,
same roles). Pages read with JavaScript off; every page checks the viewer's role on
the server and every read and action is audited. ``serving`` never imports this package.

The app itself is :func:`console.app.create_app` (imported from there, not here, so that
reading the ``console`` section of the config stays cheap for the CLI).
"""

from __future__ import annotations

from console.config import ConsoleConfig

__all__ = ["ConsoleConfig"]
