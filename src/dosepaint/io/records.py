"""Records that several stages read: the TCP model a plan uses."""

from __future__ import annotations

from .tables import read_json


def read_tcp_model(inputs: dict, tcp: dict) -> dict:
    """The TCP model: fitted on the training split (``inputs["tcp_model"]``, cohort/tcp_fit.json) when
    ``tcp["source"]`` is ``fit``, else the configured α, α/β and f_c.
    """
    if tcp.get("source", "config") == "config":
        return {"source": "config", **{k: float(tcp[k]) for k in ("alpha", "alpha_beta", "clonogenic_fraction")}}
    model = read_json(inputs["tcp_model"])["model"]
    return {
        "source": f"fit ({model['estimator']})",
        **{k: float(model[k]) for k in ("alpha", "alpha_beta", "clonogenic_fraction")},
    }
