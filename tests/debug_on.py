"""Loaded with `-p tests.debug_on` (pyproject.toml), before pytest-django imports the
settings: the tests run with DEBUG on, as scripts/run does, since the settings default to
production. Processes the tests start inherit it unless they set DEBUG themselves."""

import os

os.environ["DEBUG"] = "true"
