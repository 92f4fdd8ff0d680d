"""Getting ratings into the lake and keeping them there.

- `layouts`, `source`, `lines`, `parse`, `ingest`: a MovieLens release (folder or zip, any
  published layout) validated row by row; writes ratings, movies, tags, links, genome_scores,
  genome_tags, rejects and ingestion_runs.
- `release`, `download`, `synthetic`: where a release comes from (a folder, GroupLens, or a
  generated one).
- `split`: reads ratings; writes ratings_train, ratings_test, ratings_buffer and split_info.
- `increment`: reads ratings_buffer; records tonight's arrivals in ratings_increments.
- `known`: the ratings known as of a run date (ratings_train + ratings_test + arrivals so far),
  the one definition production trains and serves from.
- `drift`: reads the known ratings and tonight's arrivals; writes drift_alerts.
"""
