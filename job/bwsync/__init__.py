"""bwsync."""
