"""Bridges to other libraries (optional; each needs its library installed)."""
