"""longweave.clients."""
