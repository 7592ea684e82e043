"""One module per ``asd`` subcommand; each defines ``register(subparsers)``."""
