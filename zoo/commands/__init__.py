"""One module per `zoo` subcommand; heavy imports live inside the command functions."""
