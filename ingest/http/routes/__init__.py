"""Route modules: handlers only parse, validate and hand off."""
