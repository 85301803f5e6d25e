"""Provenance record: checksums, config hash, seeds."""

import json

from dosepaint.stages import provenance as pv


def test_checksums_change_with_one_byte_and_not_with_order(tmp_path):
    a = tmp_path / "A"
    (a / "sub").mkdir(parents=True)
    (a / "x.dcm").write_bytes(b"\x00" * 100)
    (a / "sub" / "y.dcm").write_bytes(b"abc")
    sums = pv.folder_checksums(a)
    assert list(sums) == ["sub/y.dcm", "x.dcm"]
    # SHA-256 of "abc" (FIPS 180-2 test vector)
    assert sums["sub/y.dcm"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    before = pv.digest(sums)
    (a / "x.dcm").write_bytes(b"\x00" * 99 + b"\x01")
    assert pv.digest(pv.folder_checksums(a)) != before


def test_config_hash_and_seeds():
    c1 = {"b": {"seed": 3, "x": 1.0}, "a": {"split_seed": 7}}
    c2 = {"a": {"split_seed": 7}, "b": {"x": 1.0, "seed": 3}}
    assert pv.config_hash(c1) == pv.config_hash(c2)
    assert pv.config_hash(c1) != pv.config_hash({**c1, "a": {"split_seed": 8}})
    assert pv.config_hash({**c1, "results": "/a"}) == pv.config_hash({**c1, "results": "/b"}) == pv.config_hash(c1)
    assert pv.find_seeds(c1) == {"b.seed": 3, "a.split_seed": 7}


def test_record(tmp_path):
    d = tmp_path / "P1"
    d.mkdir()
    (d / "ct.dcm").write_bytes(b"abc")
    sheet = tmp_path / "sheet.tsv"
    sheet.write_text("patient_id\nP1\n")
    out = tmp_path / "prov.json"
    pv.run(
        {"sheet": str(sheet), "dicom": [str(d)]},
        {"provenance": out},
        params={"patient_ids": ["P1"], "config": {"x": {"seed": 1}}, "workflow_dir": str(tmp_path)},
    )
    rec = json.loads(out.read_text())
    assert rec["patients"]["P1"]["files"] == {"ct.dcm": pv.sha256_file(d / "ct.dcm")}
    assert rec["seeds"] == {"x.seed": 1}
    assert rec["packages"]["numpy"] and rec["packages"]["dosepaint"]
    assert rec["workflow_commit"] is None  # not a git checkout
