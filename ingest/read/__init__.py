"""The read side: report routes, CSV export, the dashboard and its static files."""
