"""The ``carbon-node report`` page: :mod:`.summary` (figures per model), :mod:`.charts` (matplotlib SVG),
:mod:`.page` (the HTML). Only the ``report`` command imports this package; the node never does."""
