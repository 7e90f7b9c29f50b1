"""What ``tagsmith serve`` runs: the tag service with the web console mounted at ``/ui``.

``bentoml serve tagsmith.service:TagService`` (with ``TAGSMITH_PROJECT`` set) serves the
JSON endpoints of :mod:`serving.service` and the console of :mod:`console` from one
process. Importing this module mounts the console; nothing else imports it.
"""

from __future__ import annotations

from serving.service import TagService
from tagsmith.console_app import mount_console

__all__ = ["TagService"]

mount_console(TagService)
