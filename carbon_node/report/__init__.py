"""Reading what the node answered: ``carbon-node results`` (:mod:`.results`: the journal, read-only) and
``carbon-node report`` (:mod:`.summary`: figures per model, :mod:`.charts`: matplotlib SVG, :mod:`.page`:
the HTML). Only those two commands import this package; the node never does."""
