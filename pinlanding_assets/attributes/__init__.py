"""Attribute domain: candidate attributes from the VLM stage, and their curation into a vocabulary."""
