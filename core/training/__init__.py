"""Training and evaluation: fine-tune a transformer classifier on a project's real and/or synthetic items,
evaluate it on the real test split, and measure how accuracy changes with the test items' agreement.

One module per concept: ``config`` (the frozen run settings), ``data`` (which items train and test),
``classifier`` (the PyTorch model behind a scikit-learn-style wrapper), ``metrics`` (pure maths, the agreement
sweep), ``run`` (a run's life: job, training, evaluation, artifacts), ``service`` (what pages and the CLI call),
``charts`` (Altair figures like the paper's).
"""
