"""Edge settings and the configuration stores (goals, links, tokens)."""
