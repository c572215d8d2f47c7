"""What each stage of the pipeline does with a batch of records, without Faust.

A stage reads and writes its tables through ``app.stages.state`` views and returns the
records it wants sent as ``Output``\\ s; the Faust agents (``agents/``) only fetch,
call, send and commit. The same code runs under a pure "live" simulation in the tests,
with dicts for tables and any interleaving of the topics' partitions.
"""
