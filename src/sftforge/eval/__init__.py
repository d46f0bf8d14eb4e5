"""Evaluation: perplexity, multiple choice, rating sheets, generation health, checks."""
