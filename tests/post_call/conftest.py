"""Post-call tests run the Celery tasks eagerly (inline, in this process) unless they
start a real worker."""

import pytest

from voiceagents.celery import app as celery_app


@pytest.fixture
def eager_celery():
    saved = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield celery_app
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = saved
