"""REST API v1 of the dataset service (FastAPI): `create_app(settings)` in `main.py`."""
