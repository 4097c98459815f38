"""``sharing-guard what-if``: re-decide real history under a candidate policy, report what changes.

* :mod:`~sharing_guard.whatif.lines`: one history line (an event, with the decision
  recorded for it, or a sealed placeholder);
* :mod:`~sharing_guard.whatif.sides`: the state under the old side and the candidate;
* :mod:`~sharing_guard.whatif.tally`: old and new decision compared, changes grouped;
* :mod:`~sharing_guard.whatif.rules`: which rules of the candidate differ, and which of them
  explain a group of changes;
* :mod:`~sharing_guard.whatif.run`: the loop over a history;
* :mod:`~sharing_guard.whatif.report`: the report as JSON and as text;
* :mod:`~sharing_guard.whatif.command`: the command (files, standard streams, exit status).

All but the last are pure. See ``docs/policy-change.md``, "What-if over history".
"""
