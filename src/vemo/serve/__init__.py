"""`vemo serve`: a local web page and HTTP API over the predict pipeline.

Drop a video (or a photo) on the page, or `curl -F file=@clip.mp4 localhost:8000/api/predict`, and get
the emotion of every window over time. Built on FastAPI + uvicorn: an ASGI stack that streams
uploads, writes its own OpenAPI description (served at /docs with bundled assets, no CDN) and needs
no separate web server for local use.
"""

from vemo.serve.app import ServeSettings, create_app, serve

__all__ = ["ServeSettings", "create_app", "serve"]
