"""`vaejax reproduce`: a replica matches exactly, and a planted difference is found."""

import json

from vaejax import records, reproduce, train

from run_helpers import small_config


def test_reproduce_matches_and_detects_a_planted_mismatch(tmp_path, mnist_dir):
    config = small_config(mnist_dir, **{"train.epochs": 1})
    train.train(config, tmp_path / "orig", log=lambda *_: None)
    report = reproduce.reproduce(tmp_path / "orig", tmp_path / "replica", log=lambda *_: None)
    assert report["match"] and report["differences"] == [], report["differences"]

    # results.json written by an older vaejax: eval settings added since are missing from its
    # eval_settings, and the evaluation they describe is the same
    results = records.read_json(tmp_path / "orig" / records.RESULTS)
    for key in ("disentanglement", "disentanglement_examples", "bdmc_examples"):
        del results["eval_settings"][key]
    records.write_json(tmp_path / "orig" / records.RESULTS, results)
    report = reproduce.reproduce(tmp_path / "orig", tmp_path / "replica_old", log=lambda *_: None)
    assert report["match"], report["differences"]

    rows = records.read_metrics(tmp_path / "orig")
    rows[0]["val/neg_elbo"] += 1e-4
    (tmp_path / "orig" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = reproduce.reproduce(tmp_path / "orig", tmp_path / "replica2", log=lambda *_: None)
    assert not report["match"]
    assert any("val/neg_elbo" in d for d in report["differences"])
    assert json.loads((tmp_path / "replica2" / "reproduce.json").read_text())["match"] is False
