"""The web page and REST API: ``app.create_app`` and the static page it serves."""
