"""``make demo``: the whole system on embedded defaults, watched live in the terminal.

``scripts/demo.sh`` starts (or reuses) a broker and runs ``python -m sharing_guard.demo``,
which creates the guard's topics, runs one ``sharing-guard worker`` subprocess with a
private application id, sends a steady stream of simulated traffic plus a scripted story
through :class:`~sharing_guard.client.TransferClient`, and shows the decisions as they
come back on ``sharing.decisions``.

Modules: :mod:`.story` (the scripted events and what each should yield), :mod:`.traffic`
(the producer threads), :mod:`.tally` (counts), :mod:`.view` (rendering, pure),
:mod:`.screen` (terminal or plain output), :mod:`.feed` (the decisions consumer),
:mod:`.topics` (topic names, creation, removal), :mod:`.guard` (the worker process) and
:mod:`.cli` (the orchestration).
"""
