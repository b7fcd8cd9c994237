"""Numbered SQL migrations, shipped inside the package so any working directory works."""
