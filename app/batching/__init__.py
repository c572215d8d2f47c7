"""A batch path through Faust for the hot topics (input, person-events, effects).

``consumer``: fetched records reach a handler per fetch, acked in Faust's bookkeeping.
``sender``: records go out as one producer batch per topic partition.
``state``: a table partition read with one multi-get and written once per transaction:
changelog batches first, then one RocksDB ``WriteBatch`` with the changelog offset.
``transaction``: the order that makes a crash at any point lose nothing.
"""
