"""longweave.service."""
