"""vtrial: virtual drug trials on simulated ECGs.

Notebook API::

    import vtrial
    protocol = vtrial.load_protocol("protocols/quickstart.yaml")
    result = vtrial.run_trial(protocol, out="runs/quickstart")
    result.arms, result.patients, result.samples()
"""
from vtrial.protocol import ProtocolError, load_protocol

__version__ = "0.1.0"
__all__ = ["load_protocol", "run_trial", "ProtocolError"]


def run_trial(protocol, out=None, **kwargs):
    """Run a trial (see ``vtrial.engine.run_trial``); imports Ray only when called."""
    from vtrial.engine import run_trial as _run

    return _run(protocol, out=out, **kwargs)
