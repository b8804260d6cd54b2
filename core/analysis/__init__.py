"""Analysis: sentence embeddings (cached), diversity and similarity of real and synthetic data, the paper's
whole comparison as a study, and its report."""
