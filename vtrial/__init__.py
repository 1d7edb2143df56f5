"""vtrial: virtual drug trials on simulated ECGs.

Notebook API::

    import vtrial
    protocol = vtrial.load_protocol(vtrial.example_protocol("quickstart"))
    result = vtrial.run_trial(protocol, out="runs/quickstart")
    result.arms, result.patients, result.samples()
"""

from vtrial.data import example_protocol, example_protocols, package_version
from vtrial.spec.protocol import ProtocolError
from vtrial.trial import RunError, load_protocol, run_trial

__version__ = package_version()
__all__ = [
    "load_protocol",
    "run_trial",
    "example_protocol",
    "example_protocols",
    "ProtocolError",
    "RunError",
    "__version__",
]
