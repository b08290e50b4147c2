"""One module per third-party integration; each imports its optional dependency itself."""
