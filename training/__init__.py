"""Training of the learned router."""
