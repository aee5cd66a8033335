"""Workflows: what the commands do, composed from the domain modules below.

One module per command group: :mod:`.inspect` (``blocks``, ``stats``), :mod:`.train`,
:mod:`.prune`, :mod:`.report` and :mod:`.sweep` (``sweep``, ``demo``). Domain modules
never import from here.
"""
