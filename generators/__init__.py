"""longweave.generators."""
