from lora_training.reporting.terms import recall_by_source


def _per_term(hits):
    return {t: {"hits": h, "total": 2, "recall": h / 2} for t, h in hits.items()}


def test_recall_grouped_by_where_each_term_was_heard():
    results = {
        "seen_terms_by_source": {"real": ["WER", "kubectl"], "synthetic": ["kubectl", "nginx"]},
        "summary": {
            "baseline": {"term_recall": {"per_term": _per_term({"WER": 0, "kubectl": 1, "nginx": 0, "pytest": 0})}},
            "adapter": {"term_recall": {"per_term": _per_term({"WER": 2, "kubectl": 2, "nginx": 1, "pytest": 0})}},
        },
    }
    rows = {r[0]: r[1:] for r in recall_by_source(results)}
    assert rows == {
        "only real": ["1", "0.00% (0/2)", "100.00% (2/2)"],
        "only synthetic": ["1", "0.00% (0/2)", "50.00% (1/2)"],
        "real + synthetic": ["1", "50.00% (1/2)", "100.00% (2/2)"],
        "unseen in training": ["1", "0.00% (0/2)", "0.00% (0/2)"],
    }


def test_no_breakdown_without_the_sidecar_terms():
    assert recall_by_source({"summary": {}}) == []
    assert recall_by_source(None) == []
