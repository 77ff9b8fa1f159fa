"""Text-browser environments: the shared web machinery and the sites built on it."""
