"""The tag service over the fakes: ``bentoml serve tests.serving.fake_app:TagService``."""

from __future__ import annotations

from serving.service import make_service
from serving.settings import load_settings
from tests.serving.fakes import build_fake_runtime

TagService = make_service(build_fake_runtime, load_settings())
