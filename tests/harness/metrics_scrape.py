"""A worker's Prometheus exposition, parsed once by prometheus_client into samples keyed by name and labels."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples_of(text: str) -> Samples:
    """Every sample of an exposition text: (name, labels) -> value."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def scrape(url: str) -> tuple[str, Samples]:
    """GET {url}/metrics: the text (for promtool) and its samples; a non-200 or non-text answer fails the test."""
    resp = requests.get(f"{url}/metrics", timeout=5)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain"), resp.headers
    return resp.text, samples_of(resp.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; a missing one fails with the samples of that name that do exist."""
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no sample {name}{labels}; have {sorted(k for k in samples if k[0] == name)}"
    return samples[key]
