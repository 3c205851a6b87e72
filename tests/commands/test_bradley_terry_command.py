"""``bargainnet bradley-terry`` end to end."""

from __future__ import annotations

import csv

from bargainnet.evaluation import bradley_terry as bt
from bargainnet.cli import main


def test_bradley_terry_command(tmp_path, capsys):
    pairs = bt.simulate([1.0, 0.0, -1.0], 300, seed=0, names=["ours", "dovenet", "composite"])
    src = tmp_path / "pairs.csv"
    src.write_text("winner,loser\n" + "".join(f"{w},{l}\n" for w, l in pairs))
    out = tmp_path / "scores.csv"
    assert main(["bradley-terry", str(src), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "300 comparisons between 3 items" in text and "| 1 | ours |" in text
    rows = list(csv.DictReader(out.open()))
    assert [r["item"] for r in rows] == ["ours", "dovenet", "composite"]
    assert float(rows[0]["se"]) > 0


def test_bradley_terry_command_errors(tmp_path, capsys):
    assert main(["bradley-terry", str(tmp_path / "none.csv")]) == 3
    assert "not found" in capsys.readouterr().err
    src = tmp_path / "p.csv"
    src.write_text("a,b\na,c\nb,c\n")
    assert main(["bradley-terry", str(src)]) == 3
    assert "--prior" in capsys.readouterr().err
    assert main(["bradley-terry", str(src), "--prior", "0.5"]) == 0
    assert main(["bradley-terry", str(src), "-o", str(src)]) == 4
