"""The commands, one module each. A command maps its flags to the library's parameters
(a config dataclass where there is one), calls one library function and prints the result.
``COMMANDS`` and ``GROUPS`` are what the app registers (in pipeline order)."""
from . import ablate, blocks, data, demo, export, prune, report, stats, sweep, train

COMMANDS = [
    ("blocks", blocks.blocks),
    ("train", train.train),
    ("stats", stats.stats),
    ("ablate", ablate.ablate),
    ("prune", prune.prune),
    ("export", export.export),
    ("report", report.report),
    ("sweep", sweep.sweep),
    ("demo", demo.demo),
]

# Command groups: (name, help, [(sub-command name, function), ...]).
GROUPS = [
    ("data", "Built-in data sets.", [("make", data.make)]),
]
