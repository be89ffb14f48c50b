"""Options several subcommands share."""


def add_plugin_option(parser) -> None:
    """``--plugin FILE_OR_MODULE`` (repeatable): the user's own components."""
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                        help="a Python file or module registering your own components (repeatable); "
                             "recorded in the run folder's config")


def add_changed_inputs_option(parser) -> None:
    """``--allow-changed-inputs``, for the commands that open a trained run folder (and so check
    its recorded inputs, :mod:`pyrovae.runs.inputs`)."""
    parser.add_argument("--allow-changed-inputs", action="store_true",
                        help="open a run even if a plugin or data file changed since it was trained (see its inputs.json)")
