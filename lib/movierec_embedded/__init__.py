"""Development and single-machine helpers that are not part of the runtime package: the
embedded PostgreSQL server (`postgres`) and a Spark standalone cluster on 127.0.0.1
(`cluster`). They import nothing from `movierec`, and `movierec` reaches them only from the
driver (the embedded PostgreSQL default), so executors never receive them.
"""
