"""Entry points: the command line (and the web view). They build the composition root and call services."""
