"""Subcommands of the ``squeezedet`` command line; each module has add_arguments() and run()."""
