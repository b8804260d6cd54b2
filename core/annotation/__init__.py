"""Annotation: the pool of items to label, assignment to annotators (next item, reservations, skips,
progress), adjudication, crowd studies (links, workers and their queue) and quality control (gold items,
attention checks, qualification, per-annotator quality, exclusion)."""
