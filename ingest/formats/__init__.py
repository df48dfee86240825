"""Wire formats: each parser turns one reference format into canonical events (pure)."""
