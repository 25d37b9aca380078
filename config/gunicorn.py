"""gunicorn's settings for `make prod` (manage.py serve_prod passes `--config python:config.gunicorn`):
its own lines (start-up, worker boots, one access line per request) go through the formatter
Django's logs use, so LOG_FORMAT=json makes every line of a production host JSON."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.conf import settings  # noqa: E402 (reading settings does not set Django up)

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": settings.LOGGING["formatters"],
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": settings.LOG_FORMAT,
                             "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
                "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False}},
}
