"""The law-enforcement order workflow: register, approve (four eyes), revoke, account.

An HTTP service (:mod:`.api`, composed in :mod:`.bootstrap`) publishes the contract's
order events to ``legal.orders`` and learns the disclosures made under each order from
the guard's decisions; :mod:`.cli` is the legal officers' command line. The pure part
(what state an order is in) lives in :mod:`.model`.
"""
