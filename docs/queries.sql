-- The questions people ask of the published recommendations, in SQL that runs unchanged on
-- PostgreSQL (psql: \set user_id 1) and on the Delta lake through Spark SQL
-- (movierec.serve.serving_sql.register_views(spark, lake), then spark.sql(serving_sql.bind(query, {"user_id": 1}))).
-- Both expose the same relations:
--   recommendations          (user_id, rank, movie_id, score, model_version, run_date)  newest run
--   recommendations_previous  the same columns, the run before it
--   popular_movies           (rank, movie_id, score, model_version, run_date)  for users not in
--                            recommendations (new sign-ups)
--   movies                   (movie_id, title, year, genres)  genres: an array of text
--   movie_genres             (movie_id, genre)
--   user_genres              (user_id, genre, ratings)  how many train ratings a user gave per genre
-- tests/test_queries.py runs every query below on both engines and compares the answers.

-- name: top10_for_user
-- A user's top 10, with titles and genres.
SELECT r.rank, r.movie_id, m.title, m.year, m.genres, r.score
FROM recommendations r
JOIN movies m ON m.movie_id = r.movie_id
WHERE r.user_id = :user_id AND r.rank <= 10
ORDER BY r.rank;

-- name: users_for_movie
-- The users a movie is recommended to, best placed first.
SELECT r.user_id, r.rank
FROM recommendations r
WHERE r.movie_id = :movie_id
ORDER BY r.rank, r.user_id;

-- name: coverage
-- How many distinct movies appear across all lists, against the catalog.
SELECT COUNT(DISTINCT r.movie_id) AS movies_recommended,
       (SELECT COUNT(*) FROM movies) AS movies_in_catalog,
       COUNT(DISTINCT r.user_id) AS users
FROM recommendations r;

-- name: genre_mix
-- The genre mix of a user's list versus their rating history (shares of genre mentions).
WITH listed AS (
    SELECT g.genre, COUNT(*) AS n
    FROM recommendations r JOIN movie_genres g ON g.movie_id = r.movie_id
    WHERE r.user_id = :user_id
    GROUP BY g.genre
), history AS (
    SELECT genre, ratings AS n FROM user_genres WHERE user_id = :user_id
)
SELECT COALESCE(l.genre, h.genre) AS genre,
       ROUND(CAST(COALESCE(l.n, 0) AS DECIMAL(12, 4)) / (SELECT SUM(n) FROM listed), 4) AS share_of_list,
       ROUND(CAST(COALESCE(h.n, 0) AS DECIMAL(12, 4)) / (SELECT SUM(n) FROM history), 4) AS share_of_history
FROM listed l FULL OUTER JOIN history h ON h.genre = l.genre
ORDER BY share_of_list DESC, share_of_history DESC, genre;

-- name: changes_between_runs
-- What changed for a user between the previous run and the newest: movies that came in, went
-- out, or moved (rank_before / rank_now are NULL for movies new to or gone from the list).
SELECT COALESCE(n.movie_id, p.movie_id) AS movie_id, p.rank AS rank_before, n.rank AS rank_now,
       CASE WHEN p.movie_id IS NULL THEN 'in'
            WHEN n.movie_id IS NULL THEN 'out'
            WHEN n.rank < p.rank THEN 'up'
            WHEN n.rank > p.rank THEN 'down'
            ELSE 'same' END AS change
FROM (SELECT movie_id, rank FROM recommendations WHERE user_id = :user_id) n
FULL OUTER JOIN (SELECT movie_id, rank FROM recommendations_previous WHERE user_id = :user_id) p
  ON p.movie_id = n.movie_id
ORDER BY COALESCE(n.rank, 1000000), p.rank, movie_id;

-- name: new_user_list
-- What a user who is not in recommendations (a new sign-up) is shown.
SELECT p.rank, p.movie_id, m.title
FROM popular_movies p JOIN movies m ON m.movie_id = p.movie_id
WHERE p.rank <= 10
ORDER BY p.rank;
