"""The operator console: server-rendered pages, a small script, a stylesheet."""
