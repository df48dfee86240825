"""The public conversion stream's core (issue 14): which change of a conversion is published, as what
CloudEvent bytes. Pure; the runtimes store or produce what it returns."""
