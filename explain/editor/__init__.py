"""The browser attention-map editor: `server.py` (Flask app) and its static page."""
