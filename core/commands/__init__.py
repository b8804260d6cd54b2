"""CLI sub-commands, one module per capability; each defines ``register(subparsers, common)``."""
