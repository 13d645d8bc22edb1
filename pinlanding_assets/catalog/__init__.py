"""Catalog domain: drops, product validation, image evidence, catalog profile."""
