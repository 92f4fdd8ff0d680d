from pyspark.sql import functions as F

from movierec.data.lines import read_numbered_lines


def test_line_numbers_match_the_file_across_many_blocks(spark, tmp_path):
    path = tmp_path / "big.csv"
    lines = [f"{i},{'x' * (i % 37)}" for i in range(1, 20_001)]
    path.write_text("\r\n".join(lines) + "\r\n")  # CRLF, as GroupLens ships
    old = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "16k")  # force dozens of blocks
    try:
        df, n = read_numbered_lines(spark, str(path))
        assert df.rdd.getNumPartitions() > 10
        got = sorted((r.line_number, r.raw) for r in df.collect())
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", old)
    assert n == 20_000
    assert got == [(i + 1, text) for i, text in enumerate(lines)]


def test_empty_file_has_no_lines(spark, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    df, n = read_numbered_lines(spark, str(path))
    assert n == 0 and df.count() == 0


def test_blank_lines_are_kept_and_numbered(spark, tmp_path):
    path = tmp_path / "gaps.txt"
    path.write_text("a\n\nc\n")
    df, n = read_numbered_lines(spark, str(path))
    assert n == 3
    assert df.orderBy("line_number").select(F.col("raw")).collect()[1].raw == ""
