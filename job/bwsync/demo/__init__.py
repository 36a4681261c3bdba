"""The built-in demo directory (package data)."""
