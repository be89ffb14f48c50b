"""Options several subcommands share."""


def add_plugin_option(parser) -> None:
    """``--plugin FILE_OR_MODULE`` (repeatable): the user's own components."""
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                        help="a Python file or module registering your own components (repeatable); "
                             "recorded in the run folder's config")
