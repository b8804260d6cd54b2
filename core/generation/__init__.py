"""Generation: synthetic examples from an LLM, zero-shot or few-shot. Settings (``config``), few-shot ``seeds``,
the paper's prompts (``prompts``, pure), LLM ``backends`` behind one protocol, ``parsing`` and filters (pure),
the generation ``jobs``, what pages and the CLI call (``service``), human ``review``, and the LLM as one more
annotator (``llm_annotator``), several of them as a panel (``llm_panel``)."""
