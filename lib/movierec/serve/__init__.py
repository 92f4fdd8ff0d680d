"""Publishing the champion's lists where people read them.

- `recommend`: reads the known ratings (data/known.py) and the registry's champion; writes recommendations,
  recommendations_latest and popular_movies, then publishes to PostgreSQL.
- `pg_settings` (where PostgreSQL is), `pg_schema` (the served tables' DDL), `pg_publish`
  (staging load and atomic swap): the PostgreSQL sink.
- `serving_sql`: the relations of docs/queries.sql, for PostgreSQL and Spark SQL alike.
- `smoke`: reads recommendations_latest and PostgreSQL as an application would.
"""
