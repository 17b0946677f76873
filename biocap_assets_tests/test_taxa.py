"""taxa logic on small hand-made catalogs and on the real list of ambiguous binomials."""

import csv
from pathlib import Path

import duckdb
import pytest

from biocap_assets.demo.world import CATALOG_COLUMNS
from biocap_assets.taxonomy.catalog import CatalogError, check_catalog
from biocap_assets.taxonomy.taxa import build_taxa

RAVEN = ("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Corvus", "corax")
GRASS = ("Plantae", "Tracheophyta", "Liliopsida", "Poales", "Poaceae", "Digitaria", "sanguinalis")
CLAM = ("Animalia", "Mollusca", "Bivalvia", "Carditida", "Astartidae", "Digitaria", "sanguinalis")


def write_catalog(path: Path, rows: list[tuple], columns=CATALOG_COLUMNS) -> str:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for i, (ranks, common) in enumerate(rows):
            record = dict.fromkeys(columns, "")
            record.update(
                zip(
                    ("kingdom", "phylum", "class", "order", "family", "genus", "species"),
                    ranks,
                    strict=True,
                )
            )
            record["common"] = common
            record["treeoflife_id"] = f"id-{i}"
            record["split"] = "train"
            writer.writerow([record[c] for c in columns])
    return str(path)


def taxa_of(catalog: str):
    with duckdb.connect() as connection:
        return build_taxa(connection, catalog)


def by_binomial(result):
    return {(r["binomial"], r["kingdom"]): r for r in result.table.to_pylist()}


def test_duplicate_rows_become_one_taxon_with_an_image_count(tmp_path):
    catalog = write_catalog(tmp_path / "c.csv", [(RAVEN, "common raven")] * 3)
    result = taxa_of(catalog)
    assert result.table.num_rows == 1
    row = result.table.to_pylist()[0]
    assert row["binomial"] == "Corvus corax"
    assert row["n_images"] == 3
    assert row["is_ambiguous"] is False
    assert row["common_name"] == "common raven"


def test_hemihomonyms_are_flagged_on_every_tuple(tmp_path):
    catalog = write_catalog(
        tmp_path / "c.csv", [(GRASS, "hairy crabgrass"), (CLAM, ""), (RAVEN, "common raven")]
    )
    rows = by_binomial(taxa_of(catalog))
    assert rows[("Digitaria sanguinalis", "Plantae")]["is_ambiguous"] is True
    assert rows[("Digitaria sanguinalis", "Animalia")]["is_ambiguous"] is True
    assert rows[("Corvus corax", "Animalia")]["is_ambiguous"] is False
    assert rows[("Digitaria sanguinalis", "Animalia")]["common_name"] is None


def test_missing_ranks_are_counted_per_rank_not_lost(tmp_path):
    no_species = RAVEN[:6] + ("",)
    no_family = RAVEN[:4] + ("", "Corvus", "corax")
    catalog = write_catalog(
        tmp_path / "c.csv",
        [(RAVEN, "raven"), (no_species, ""), (no_species, ""), (no_family, "raven")],
    )
    result = taxa_of(catalog)
    assert result.table.num_rows == 1
    assert result.catalog_rows == 4
    assert result.incomplete_rows == 3
    assert result.missing_by_rank["species"] == 2
    assert result.missing_by_rank["family"] == 1
    assert result.missing_share == pytest.approx(0.75)
    assert {r["n_images"] for r in result.incomplete_preview} == {2, 1}


def test_case_and_whitespace_variants_are_one_taxon(tmp_path):
    variant = (" animalia", "CHORDATA ", "aves", "passeriformes", "Corvidae", "corvus  ", "Corax")
    catalog = write_catalog(
        tmp_path / "c.csv", [(RAVEN, "common raven"), (variant, " common  raven ")]
    )
    result = taxa_of(catalog)
    assert result.table.num_rows == 1
    row = result.table.to_pylist()[0]
    assert (row["kingdom"], row["phylum"], row["genus"], row["species"]) == (
        "Animalia",
        "Chordata",
        "Corvus",
        "corax",
    )
    assert row["n_images"] == 2
    assert row["common_names"] == ["common raven"]


def test_most_frequent_common_name_wins_with_a_stable_tie_break(tmp_path):
    catalog = write_catalog(
        tmp_path / "c.csv",
        [(RAVEN, "raven"), (RAVEN, "common raven"), (RAVEN, "common raven"), (RAVEN, "")],
    )
    row = taxa_of(catalog).table.to_pylist()[0]
    assert row["common_name"] == "common raven"
    assert row["common_names"] == ["common raven", "raven"]
    tie = write_catalog(tmp_path / "t.csv", [(RAVEN, "b name"), (RAVEN, "a name")])
    assert taxa_of(tie).table.to_pylist()[0]["common_name"] == "a name"


def test_header_only_catalog_gives_an_empty_table(tmp_path):
    catalog = write_catalog(tmp_path / "c.csv", [])
    check_catalog(catalog)
    result = taxa_of(catalog)
    assert result.table.num_rows == 0
    assert result.catalog_rows == 0
    assert result.missing_share == 0.0


def test_missing_column_is_named(tmp_path):
    columns = [c for c in CATALOG_COLUMNS if c != "family"]
    path = tmp_path / "c.csv"
    path.write_text(",".join(columns) + "\n" + ",".join("x" for _ in columns) + "\n")
    with pytest.raises(CatalogError, match=r"c\.csv: missing column\(s\) family"):
        check_catalog(str(path))


def test_binary_file_is_not_a_csv(tmp_path):
    path = tmp_path / "catalog.parquet"
    path.write_bytes(b"PAR1\x00\x15\x04\x15\x00" * 50)
    with pytest.raises(CatalogError, match="catalog.parquet: not a CSV"):
        check_catalog(str(path))


def test_empty_and_unreadable_catalogs_are_named(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(CatalogError, match="empty.csv: the file is empty"):
        check_catalog(str(empty))
    with pytest.raises(CatalogError, match="nowhere.csv: no such file"):
        check_catalog(str(tmp_path / "nowhere.csv"))
    with pytest.raises(CatalogError, match="http://127.0.0.1:9/catalog.csv: cannot be read"):
        check_catalog("http://127.0.0.1:9/catalog.csv")


def test_a_ragged_row_fails_with_the_file_and_line(tmp_path):
    path = Path(write_catalog(tmp_path / "c.csv", [(RAVEN, "raven")] * 5))
    with path.open("a") as f:
        f.write("train,only,three\r\n")
    with pytest.raises(CatalogError, match=r"c\.csv: .*Line: 7.*Expected Number of Columns: 17"):
        taxa_of(str(path))


def test_real_ambiguous_binomials_are_flagged(reference_data, tmp_path):
    """The 1444 binomials upstream found under several tuples must all be flagged here."""
    source = reference_data / "biocap/data/wiki_species/species_binomial_ambiguous.csv"
    with source.open() as f:
        records = list(csv.DictReader(f))
    rows = [
        (
            (
                r["kingdom"],
                r["phylum"],
                r["class"],
                r["order"],
                r["family"],
                r["genus"],
                r["species"],
            ),
            "",
        )
        for r in records
    ]
    result = taxa_of(write_catalog(tmp_path / "c.csv", rows))
    binomials = {r["binomial"] for r in records}
    flagged = {r["binomial"] for r in result.table.to_pylist() if r["is_ambiguous"]}
    assert len(binomials) == 1444
    assert flagged == binomials
    assert result.table.num_rows == len({row for row, _ in rows})


def test_a_bad_byte_far_into_the_catalog_names_the_line(tmp_path):
    """Past the first block that check_catalog reads, so only the scan can find it."""
    path = Path(write_catalog(tmp_path / "c.csv", [(RAVEN, "raven")] * 3000))
    assert path.stat().st_size > 64 * 1024
    with path.open("ab") as f:
        f.write(
            b"train,x,Animalia,Chordata,Aves,Passeriformes,Corvidae,Corvus,cor\xe9x" + b",a" * 9
        )
        f.write(b"\n")
    with pytest.raises(CatalogError, match=r"(?i)c\.csv: .*line:? 3002.*not utf-8"):
        taxa_of(str(path))


def test_a_carriage_return_in_an_unquoted_rank_names_the_line(tmp_path):
    path = Path(write_catalog(tmp_path / "c.csv", [(RAVEN, "raven")] * 5))
    text = path.read_text().splitlines(keepends=True)
    text[3] = text[3].replace("Corvus,", "Corvus\r,", 1)
    path.write_text("".join(text), newline="")
    with pytest.raises(CatalogError, match=r"c\.csv: line 4: a line break \(CR\) inside"):
        taxa_of(str(path))


def test_a_carriage_return_in_a_quoted_rank_is_whitespace_not_a_new_taxon(tmp_path):
    quoted = ("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Corvus\r", "corax")
    tabbed = ("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Corvus", "corax\t")
    result = taxa_of(
        write_catalog(tmp_path / "c.csv", [(RAVEN, "raven"), (quoted, ""), (tabbed, "")])
    )
    assert result.table.num_rows == 1 and result.table["n_images"].to_pylist() == [3]


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    path = Path(write_catalog(tmp_path / "c.csv", [(RAVEN, "raven")]))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert check_catalog(str(path))[0] == CATALOG_COLUMNS[0]
    assert taxa_of(str(path)).table.num_rows == 1
