"""dtf-sb package."""
