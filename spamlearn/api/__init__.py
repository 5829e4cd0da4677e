"""The HTTP scoring service (``spamlearn serve``): FastAPI app factory and its parts.

``app.py`` builds the app, ``routes.py`` holds the endpoints, ``edges.py``
authorises and bounds requests, ``scoring.py`` keeps the models in memory
and reloads them, ``service.py`` is one worker's state, ``schemas.py`` the
documented answers.  Settings: ``spamlearn.server_settings``; metrics:
``spamlearn.metrics``.
"""

from .app import app_from_environment, create_app

__all__ = ["create_app", "app_from_environment"]
