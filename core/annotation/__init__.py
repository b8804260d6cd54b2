"""Annotation: the pool of items to label, assignment to annotators (next item, reservations, skips,
progress) and adjudication."""
