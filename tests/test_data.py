import gzip
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from helpers.data import make_titles, recipe_dict, write_challenge_csv

import ensayo
from ensayo.data import DataError, DeriveError, load_splits, parse_filter, read_for_inference
from ensayo.models import load_recipe
from ensayo.recipe import RecipeError


def splits_of(raw: dict):
    return load_splits(load_recipe(raw))


def test_bad_rows_are_reported_with_file_and_line(titles_csv: Path) -> None:
    write_challenge_csv(titles_csv, make_titles(20), extra_lines=[
        "only,three,fields",
        '"",reliable,spanish,SHOES',
        "Zapatillas Nike,reliable,spanish,",
    ])
    raw = recipe_dict(titles_csv)
    raw["data"]["filters"] = []
    splits = splits_of(raw)
    report = splits.report
    assert sum(report.split_sizes.values()) == 100
    reasons = {bad.line: bad.reason for bad in report.bad_rows}
    assert reasons == {102: "3 fields, expected 4", 103: "empty title", 104: "empty category"}
    assert all(bad.file == str(titles_csv) for bad in report.bad_rows)
    raw["data"]["bad_rows"] = "fail"
    with pytest.raises(DataError, match=r"(?s)3 bad row\(s\).*titles.csv:102: 3 fields"):
        splits_of(raw)


def test_multiline_quoted_rows_keep_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "multi.csv"
    path.write_text('title,label_quality,language,category\n"a\nb",reliable,spanish,X\n"",reliable,spanish,Y\n'
                    'c,reliable,spanish,Y\n')
    raw = recipe_dict(path)
    raw["data"].update(filters=[], split={"method": "random", "train": 1.0, "validation": 0.0, "test": 0.0})
    raw["train"]["calibrate"] = "none"  # every row to train on: none held out to calibrate
    splits = splits_of(raw)
    assert splits.train["title"].to_list() == ["a\nb", "c"]
    assert [(b.line, b.reason) for b in splits.report.bad_rows] == [(4, "empty title")]
    assert splits.train["__line__"].to_list() == [2, 5]


def test_filters_and_formats_agree(tmp_path: Path, titles_csv: Path) -> None:
    csv_splits = splits_of(recipe_dict(titles_csv))
    total = sum(csv_splits.report.split_sizes.values())
    assert total == 270  # one row in ten is portuguese
    assert csv_splits.report.rows_filtered_out == 30

    table = pl.read_csv(titles_csv)
    gz = tmp_path / "titles.csv.gz"
    with open(titles_csv, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    parquet = tmp_path / "titles.parquet"
    table.write_parquet(parquet)
    jsonl = tmp_path / "titles.jsonl.gz"
    with gzip.open(jsonl, "wt") as handle:
        for row in table.iter_rows(named=True):
            handle.write(json.dumps(row) + "\n")
        handle.write("{not json\n")
    for source in (gz, parquet, jsonl):
        other = splits_of(recipe_dict(source))
        assert other.report.split_sizes == csv_splits.report.split_sizes, source
        assert other.test["title"].to_list() == csv_splits.test["title"].to_list(), source
    assert next(b.reason for b in splits_of(recipe_dict(jsonl)).report.bad_rows).startswith("not valid JSON")


def test_headerless_csv_with_escapes_like_ag_news(tmp_path: Path) -> None:
    path = tmp_path / "news.csv"
    path.write_text('"3","Fears for T N","Unions say they are \'disappointed\'"\n'
                    '"4","Race is On","A second\\team of #36;10 million \\$5 rocketeers"\n')
    raw = recipe_dict(path, calibrate="none")  # every row where the test puts it: none held out to calibrate
    raw["data"].update(header=False, columns=["topic", "title", "description"], filters=[],
                       split={"method": "random", "train": 1.0, "validation": 0.0, "test": 0.0})
    raw["inputs"][0]["column"] = "description"
    raw["output"]["column"] = "topic"
    splits = splits_of(raw)
    assert splits.train.height == 2
    assert splits.train.columns[:3] == ["topic", "title", "description"]


def test_filter_expressions() -> None:
    table = pl.DataFrame({"language": ["spanish", "portuguese", "spanish"], "tier": ["1", "3", "2"]})
    assert table.filter(parse_filter("language == spanish", table.columns)).height == 2
    assert table.filter(parse_filter("language in [portuguese, english]", table.columns)).height == 1
    assert table.filter(parse_filter("language not in [portuguese]", table.columns)).height == 2
    assert table.filter(parse_filter("tier >= 2", table.columns)).height == 2
    with pytest.raises(DataError, match="column 'lang'"):
        parse_filter("lang == spanish", table.columns)
    with pytest.raises(DataError, match="cannot read"):
        parse_filter("language ~ spanish", table.columns)


def test_stratified_split_is_seeded_and_keeps_class_shares(titles_csv: Path) -> None:
    raw = recipe_dict(titles_csv)
    first, second = splits_of(raw), splits_of(raw)
    assert first.test["title"].to_list() == second.test["title"].to_list()
    counts = first.test["category"].value_counts()["count"].to_list()
    assert max(counts) - min(counts) <= 1
    raw["data"]["split"]["seed"] = 2
    assert splits_of(raw).test["title"].to_list() != first.test["title"].to_list()
    seen = set()
    for _, part in first.items():
        lines = set(part["__line__"].to_list())
        assert not (seen & lines)
        seen |= lines


def test_group_split_keeps_groups_together(tmp_path: Path) -> None:
    rows = make_titles(20)
    path = tmp_path / "groups.csv"
    with open(path, "w") as handle:
        handle.write("title,category,seller\n")
        for index, (title, label) in enumerate(rows):
            handle.write(f"{title},{label},s{index % 17}\n")
    raw = recipe_dict(path)
    raw["data"].update(filters=[], split={"method": "group", "group_column": "seller", "train": 0.6,
                                          "validation": 0.2, "test": 0.2, "seed": 0})
    splits = splits_of(raw)
    groups = [set(part["seller"].to_list()) for _, part in splits.items()]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    assert all(groups)


def test_file_splits_sample_limit_and_unseen_labels(tmp_path: Path) -> None:
    train = write_challenge_csv(tmp_path / "train.csv", make_titles(10))
    test = write_challenge_csv(tmp_path / "test.csv", [*make_titles(2, seed=5), ("Guitarra criolla", "GUITARS")])
    raw = recipe_dict(train, calibrate="none")  # the train file whole: none of it held out to calibrate
    raw["data"].update(source=None, sample=20, split={"method": "files", "files": {"train": str(train),
                                                                                   "test": str(test)}})
    splits = splits_of(raw)
    assert splits.train.height == 20
    assert splits.validation.height == 0
    assert splits.report.labels_only_in_eval == {"test": ["GUITARS"]}
    raw["data"].update(sample=None, limit=7)
    assert splits_of(raw).train.height <= 7


def test_missing_columns_and_files_are_named(titles_csv: Path) -> None:
    raw = recipe_dict(titles_csv)
    raw["output"]["column"] = "categoria"
    with pytest.raises(DataError, match=r"\['categoria'\] named by the recipe are not in the data"):
        splits_of(raw)
    raw = recipe_dict(titles_csv.parent / "nope.csv")
    with pytest.raises(DataError, match="nope.csv: data file not found"):
        splits_of(raw)


def test_inference_reading_needs_no_label(tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    path.write_text("title,label_quality,language,category\nTaladro Bosch,reliable,spanish,\n"
                    ",reliable,spanish,\n")
    recipe = load_recipe(recipe_dict(path))
    table, report = read_for_inference(path, recipe, need_label=False)
    assert table["title"].to_list() == ["Taladro Bosch"]
    assert [b.line for b in report.bad_rows] == [3]


def test_rows_read_counts_each_files_bad_rows_once(tmp_path: Path) -> None:
    train = write_challenge_csv(tmp_path / "train.csv", make_titles(4), extra_lines=["bad,row"])
    test = write_challenge_csv(tmp_path / "test.csv", make_titles(2, seed=3), extra_lines=["bad,row", "bad,too"])
    raw = recipe_dict(train)
    raw["data"].update(source=None, filters=[], split={"method": "files", "files": {"train": str(train),
                                                                                    "test": str(test)}})
    report = splits_of(raw).report
    assert len(report.bad_rows) == 3
    assert report.rows_read == 20 + 1 + 10 + 2


def test_joined_text_columns_are_made_for_training_and_for_prediction(tmp_path: Path) -> None:
    source = tmp_path / "news.csv"
    rows = [(title, "", label) if i % 5 == 0 else (title, f"about {label.lower()}", label)
            for i, (title, label) in enumerate(make_titles(20))]
    pl.DataFrame(rows, schema=["title", "description", "category"], orient="row").write_csv(source)
    raw = recipe_dict(source)
    raw["data"]["filters"] = []
    raw["derive"] = [{"name": "article", "join": ["title", "description"], "separator": ". "}]
    raw["inputs"] = [{"name": "article", "type": "text"}]
    raw["model"] = {"type": "tfidf_linear"}
    train = splits_of(raw).train
    joined = dict(zip(train["title"].to_list(), train["article"].to_list(), strict=True))
    described = train.filter(pl.col("description") != "").row(0, named=True)
    assert joined[described["title"]] == f"{described['title']}. {described['description']}"
    bare = train.filter(pl.col("description").is_null() | (pl.col("description") == "")).row(0, named=True)
    assert joined[bare["title"]] == bare["title"]  # an empty part leaves no stray separator

    # a saved run joins the columns of new rows itself
    saved = ensayo.run(raw, output=tmp_path / "run", track=False)
    labels, _ = ensayo.load_run(tmp_path / "run").predict(
        pl.DataFrame({"title": ["Zapatillas Nike running"], "description": ["about shoes"]}))
    assert labels[0][0] == "SHOES" and saved.metrics["test/balanced_accuracy"] > 0.9

    raw["derive"][0]["join"] = ["title", "descripton"]
    with pytest.raises(DeriveError, match=r"derive.0 \(article\): join names column 'descripton'.*'description'"):
        splits_of(raw)
    raw["derive"][0]["expression"] = "1 + 1"
    with pytest.raises(RecipeError, match="exactly one of expression, bin or join"):
        load_recipe(raw)


def test_a_csv_is_read_in_chunks_that_keep_every_line_and_bad_row(tmp_path: Path) -> None:
    from ensayo.data.read import read_chunks
    from ensayo.recipe import DataConfig

    lines = ["title,category"] + [f"title {i},c{i % 3}" for i in range(1, 24)]
    lines[7] = "only one field"  # line 8
    lines[15] = "a,b,c"  # line 16
    path = tmp_path / "big.csv"
    path.write_text("\n".join(lines) + "\n")
    config = DataConfig(source=str(path))
    bad: list = []
    chunks = list(read_chunks(path, config, bad, chunk_rows=10))
    assert [c.height for c in chunks] == [10, 10, 1]
    whole = pl.concat(chunks)
    assert whole["__line__"].to_list() == [n for n in range(2, 25) if n not in (8, 16)]
    assert whole["title"][0] == "title 1" and whole["title"][-1] == "title 23"
    assert [(b.line, b.reason) for b in bad] == [(8, "1 fields, expected 2"), (16, "3 fields, expected 2")]
    assert list(read_chunks(path, DataConfig(source=str(path), limit=12), [], chunk_rows=10))[-1].height == 2


def test_a_jsonl_is_read_in_chunks_with_the_types_of_the_whole_file(tmp_path: Path) -> None:
    from ensayo.data.read import read_chunks, read_file
    from ensayo.recipe import DataConfig

    records = [{"title": f"title {i}", "price": i, "tags": ["a"] if i > 15 else []} for i in range(1, 24)]
    records[20]["price"] = 2.5  # one float among ints, in the last chunk: the field is float in every chunk
    records[4]["title"] = ["a", "list"]  # line 5: a list among plain values
    lines = [json.dumps(r) for r in records]
    lines[9] = "{cut"  # line 10
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(lines) + "\n")
    bad: list = []
    chunks = list(read_chunks(path, DataConfig(source=str(path)), bad, chunk_rows=10))
    assert [c.height for c in chunks] == [10, 10, 1]
    assert {c.schema["price"] for c in chunks} == {pl.Float64} and {c.schema["title"] for c in chunks} == {pl.String}
    assert [(b.line, b.reason.split(":")[0]) for b in bad] == [
        (10, "not valid JSON"), (5, "field 'title' is a list, in other rows a plain value")]
    whole = read_file(path, DataConfig(source=str(path)), [])
    assert whole["__line__"].to_list() == [n for n in range(1, 24) if n not in (5, 10)]
    assert whole["price"].to_list()[-3:] == [2.5, 22.0, 23.0] and whole["tags"].to_list()[-1] == ["a"]
    assert list(read_chunks(path, DataConfig(source=str(path), limit=12), [], chunk_rows=10))[-1].height == 2


HEADER = "title,category\n"
MANY = "".join(f"title {i},c{i % 3}\n" for i in range(40))  # so that few lines have quotes, as in most files
PLAIN_CSV = HEADER + MANY + 'Zapatillas Ñandú talle 42,SHOES\n,EMPTY\nañejo "vino" tinto,WINE\nx,"a, b"\n'
CSV_QUIRKS = {
    "plain": PLAIN_CSV,
    "crlf": PLAIN_CSV.replace("\n", "\r\n"),
    "no final newline": PLAIN_CSV.rstrip("\n"),
    "quoted separators and quotes": HEADER + MANY + '"a, ""b"" c",d\n"",""\n"x",y\n',
    "a blank line": HEADER + MANY + "a,b\n\nc,d\n",
    "ragged rows": HEADER + MANY + "a,b,c\nd\ne,f\n",
    "a field over several lines": HEADER + MANY + '"one\ntwo",a\nb,c\n',
    "a quote after a quoted field": HEADER + MANY + '"b"c,d\ne,f\n',
    "an unclosed quote": HEADER + MANY + '"b,c\nd,e\n',
    "a carriage return inside a field": HEADER + MANY + "a\rb,c\nd,e\n",
    "a NUL byte": HEADER + MANY + "a\x00b,c\n",
    "a byte-order mark": "\ufeff" + HEADER + MANY,
    "a quoted header": '"title",category\n' + MANY,
    "a carriage return in the header": "title\rx,category\n" + MANY,
    "a NUL byte in the header": "title\x00,category\n" + MANY,
    "a header alone": HEADER,
    "an empty file": "",
    "a field over the csv module's limit": HEADER + MANY + "x" * 200_000 + ",a\n",
    "every line quoted": HEADER + "".join(f'"title {i}","c{i % 3}"\n' for i in range(40)),
}


@pytest.mark.parametrize("block_bytes", [None, 8])
@pytest.mark.parametrize("name", list(CSV_QUIRKS))
def test_a_plain_csv_parsed_by_polars_reads_as_the_csv_module_reads_it(tmp_path: Path, name: str,
                                                                       block_bytes: int | None,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path (polars, a block of lines at a time) gives the csv module's table, bad rows and errors, also
    when a later block needs the csv module (blocks of 8 bytes: a line or two each)."""
    from ensayo.data import read
    from ensayo.recipe import DataConfig

    if block_bytes:
        monkeypatch.setattr(read, "PARSED_BLOCK_BYTES", block_bytes)
    path = tmp_path / "quirks.csv"
    path.write_bytes(CSV_QUIRKS[name].encode())
    config = DataConfig(source=str(path))

    def outcome(read_tables):
        bad: list = []
        try:
            return pl.concat(list(read_tables(path, config, bad, 2))), bad
        except DataError as exc:
            return str(exc), bad

    fast, fast_bad = outcome(read._csv_tables)
    python, python_bad = outcome(read._python_csv_tables)
    assert fast_bad == python_bad
    if isinstance(python, str):
        assert fast == python
    else:
        assert isinstance(fast, pl.DataFrame) and fast.equals(python), (fast, python)


def test_a_plain_csv_is_parsed_by_polars_and_a_latin1_one_named_by_its_line(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from ensayo.data import read
    from ensayo.recipe import DataConfig

    python_rows = []
    csv_rows = read._csv_rows
    monkeypatch.setattr(read, "_csv_rows", lambda *a: python_rows.append(a) or csv_rows(*a))
    path = tmp_path / "plain.csv"
    for name in ("plain", "crlf", "quoted separators and quotes"):
        path.write_bytes(CSV_QUIRKS[name].encode())
        table = read.read_file(path, DataConfig(source=str(path)), [])
        assert not python_rows, name
        assert table["__line__"].to_list() == list(range(2, 40 + 5 + (name != "quoted separators and quotes")))
    assert table.rows()[-3:] == [('a, "b" c', "d", 42, str(path)), ("", "", 43, str(path)), ("x", "y", 44, str(path))]

    monkeypatch.setattr(read, "PARSED_BLOCK_BYTES", 64)
    path.write_bytes(b"title,category\n" + b"a,b\n" * 40 + "caf\xe9,c\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"plain.csv:42: not UTF-8 text"):
        read.read_file(path, DataConfig(source=str(path)), [])
    assert python_rows
