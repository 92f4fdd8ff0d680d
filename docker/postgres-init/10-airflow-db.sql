-- Runs once, on an empty data volume, as POSTGRES_USER: Airflow's metadata gets its own database
-- beside the served recommendations (POSTGRES_DB).
CREATE DATABASE airflow;
