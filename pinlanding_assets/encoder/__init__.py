"""Encoder domain: the CLIP-style dual encoder, product/attribute embeddings, assignments, evaluation."""
