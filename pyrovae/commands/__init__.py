"""The subcommands, one module each: a command parses its options, calls an engine
(training, evaluation, the laboratory, sweeps), then a report. ``pyrovae.cli`` dispatches to
them and ``pyrovae.api`` calls the same functions from Python."""
