"""longweave.trainer."""
