"""What every stage shares: the config (`config`, schema in `settings`), the one Spark session
factory (`spark`), the names and schemas of every table and column (`tables`), reads and writes
of lake tables (`delta_io`), one job at a time on a lake and no reads of what a dead job half
wrote (`job_guard`), errors a user can act on (`errors`), logging and stage timing (`logs`),
credential masking (`masking`) and the jobs' common main() (`cli`).

Reads and writes no table of its own; imports nothing from the stage packages.
"""
