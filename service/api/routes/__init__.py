"""Routers, one module per resource; tests/service mirrors them."""
