"""Agreement: pure metrics (instance agreement, Krippendorff's alpha, label fidelity), Dawid–Skene
aggregation, the agreement report, a project's agreement read from the database, and its charts."""
