"""The ``switchyard`` command: argument parsing, output formats and the admin API client."""
