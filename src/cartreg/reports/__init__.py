"""Renderers of findings and reports (terminal, JSON, HTML, CSV). The library never prints."""
