"""Gunicorn settings for the recipe: its error and access logs also go to Logwell.

Gunicorn merges ``logconfig_dict`` into its defaults one key deep, so a dict
that names ``handlers`` must name the console handlers too. The endpoint and
key come from the environment the test sets.
"""

import os

bind = "127.0.0.1:0"
workers = 2
# Gunicorn 25+ opens a control socket in $HOME by default; tests must not share one.
control_socket_disable = True

_logwell = {
    "class": "logwell.handler.LogwellHandler",
    "api_key": os.environ["LOGWELL_API_KEY"],
    "endpoint": os.environ["LOGWELL_ENDPOINT"],
    "service": "web",
    "flush_interval": 0.05,
}

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": ["console", "logwell"]},
    "loggers": {
        "gunicorn.error": {
            "level": "INFO", "handlers": ["error_console", "logwell"], "propagate": False,
        },
        "gunicorn.access": {
            "level": "INFO", "handlers": ["console", "logwell"], "propagate": False,
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler", "formatter": "generic", "stream": "ext://sys.stdout",
        },
        "error_console": {
            "class": "logging.StreamHandler", "formatter": "generic", "stream": "ext://sys.stderr",
        },
        "logwell": _logwell,
    },
    "formatters": {
        "generic": {"format": "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"},
    },
}
