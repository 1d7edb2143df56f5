"""Shared fixtures: where the real data lives (and skips when it is absent), a tiny world model, loopback
checks, and small cohort-source helpers (a clinical table in the FDA study's layout, the intervals a
cohort's baseline beats measure, a protocol around a real-data cohort)."""

from pathlib import Path

import polars as pl
import pytest

from vtrial.physiology.ecgsyn import ecgsyn_beat
from vtrial.signal.measure import measure
from vtrial.sources.wfdb_cohort import FIT_FS_HZ, WINDOW_S

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (../shared/data beside the clone)")
    return SHARED_DATA


DOFETILIDE_TRIAL = {
    "name": "s",
    "seed": 11,
    "cohort": {"size": 5},
    "arms": [
        {"name": "placebo", "placebo": True},
        {"name": "dof", "drugs": [{"drug": "dofetilide", "dose": {"value": 500, "unit": "ug"}}]},
    ],
    "schedule": {"times_h": [-0.5, 2.0, 24.0]},
    "sampling": {"samples_per_patient": 3, "sampler": "mechanistic"},
}


@pytest.fixture
def dofetilide_trial() -> dict:
    """A small protocol mapping: placebo and dofetilide 500 µg in 5 patients, mechanistic sampler."""
    import copy

    return copy.deepcopy(DOFETILIDE_TRIAL)


TINY_ARCH = dict(latent_dim=8, channels=8, width=32, depth=1, diffusion_steps=50, batch_size=64)


@pytest.fixture(scope="session")
def tiny_config():
    """tiny_config(**changes): a training config for a world model small enough to train in seconds."""
    from vtrial.model.train import TrainConfig

    return lambda **changes: TrainConfig(
        **{"n_pairs": 200, "ae_steps": 20, "diffusion_train_steps": 20, **TINY_ARCH, **changes}
    )


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A tiny world model trained in seconds (shared by the model, sampling and studies tests): (model,
    training history, checkpoint path)."""
    from vtrial.model.checkpoint import save_checkpoint
    from vtrial.model.train import TrainConfig, train

    cfg = TrainConfig(
        n_pairs=300,
        latent_dim=8,
        channels=8,
        width=32,
        depth=1,
        diffusion_steps=50,
        ae_steps=60,
        diffusion_train_steps=60,
        batch_size=64,
        lambda0=0.1,
    )
    model, history = train(cfg, log=lambda d: None)
    path = save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    return model, history, path


SUBJECTS = {  # subject: (sex, age, weight, RR, PR, QRS, J-Tpeak, Tpeak-Tend) of the pre-dose ECGs
    101: ("F", 30, 61.0, 950.0, 150.0, 92.0, 230.0, 75.0),
    102: ("M", 41, 82.0, 1100.0, 170.0, 104.0, 215.0, 80.0),
    103: ("M", 25, 70.0, 1000.0, 160.0, 96.0, None, 78.0),  # J-Tpeak NA in every baseline ECG
}


def _write_table(path, subjects=SUBJECTS, drop=()):
    rows = []
    for sid, (sex, age, wt, rr, pr, qrs, jtp, tpte) in subjects.items():
        for rep, bump in enumerate((-2.0, 0.0, 2.0)):  # triplicate pre-dose ECGs
            rows.append(
                {
                    "EGREFID": f"{sid}-{rep}",
                    "RANDID": sid,
                    "SEX": sex,
                    "AGE": age,
                    "WGHT": wt,
                    "EXTRT": "Placebo",
                    "EXDOSE": 0,
                    "EXDOSU": "mg",
                    "TPT": -0.5,
                    "BASELINE": "Y",
                    "PCSTRESN": None,
                    "PCSTRESU": "ng/mL",
                    "RR": rr + bump,
                    "PR": pr,
                    "QRS": qrs,
                    "QT": None if jtp is None else qrs + jtp + tpte,
                    "JTPEAK": jtp,
                    "TPEAKTEND": tpte,
                }
            )
        rows.append({**rows[-1], "EGREFID": f"{sid}-post", "TPT": 2.0, "BASELINE": "N", "RR": 600.0, "QRS": 200.0})
    df = pl.DataFrame(rows, infer_schema_length=None).drop(list(drop))
    df.write_csv(path, null_value="NA")
    return path


def _measured(cohort, fs_hz=FIT_FS_HZ):
    w = cohort.waves
    return measure(
        ecgsyn_beat(w.to_ecgsyn(), fs_hz, WINDOW_S), fs_hz, w.rr_s.numpy() * 1000, window_start_s=WINDOW_S[0]
    )


_RUN = {
    "name": "real-cohort",
    "seed": 2,
    "arms": [
        {"name": "placebo", "placebo": True},
        {"name": "dofetilide", "drugs": [{"drug": "dofetilide", "exposure": {"multiple_of_free_cmax": 1.0}}]},
    ],
    "schedule": {"times_h": [0.0, 2.0]},
    "sampling": {"samples_per_patient": 3, "sampler": "mechanistic"},
    "compute": {"replicas": 1},
}


@pytest.fixture
def write_table():
    """write_table(path, subjects=SUBJECTS, drop=()) → path of a clinical table."""
    return _write_table


@pytest.fixture
def measured():
    """measured(cohort, fs_hz) → the measured intervals of each patient's baseline beat."""
    return _measured


@pytest.fixture
def real_run():
    """A two-arm protocol mapping without its cohort section."""
    import copy

    return copy.deepcopy(_RUN)


def _listening_addresses(processes) -> set[str]:
    import psutil

    return {c.laddr.ip for p in processes for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}


def _is_loopback(ip: str) -> bool:
    import ipaddress

    a = ipaddress.ip_address(ip.split("%")[0])
    return (getattr(a, "ipv4_mapped", None) or a).is_loopback


@pytest.fixture
def assert_loopback_only():
    """Check that processes listen only on loopback addresses (127.0.0.1, ::1, ::ffff:127.0.0.1)."""

    def check(processes):
        listening = _listening_addresses(processes)
        assert listening, "no listening sockets found"
        assert all(_is_loopback(ip) for ip in listening), sorted(listening)

    return check


# --- a clean exit -------------------------------------------------------------------------------------
# After every test has run and pytest has printed its summary, the interpreter's teardown runs the static
# destructors of the native libraries loaded in this process (torch, Ray's core worker, BLAS thread pools).
# Their order is not defined, and a clean-clone CI run of this suite once ended "219 passed" followed by a
# segmentation fault in that teardown (a rerun of the same clone exited 0). The exit status is pytest's own,
# computed before the teardown; shut Ray down properly, flush, and leave without the interpreter teardown.
_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    import os
    import sys

    if not _EXIT_STATUS or os.environ.get("VTRIAL_PYTEST_TEARDOWN") == "1":
        return  # VTRIAL_PYTEST_TEARDOWN=1: keep the normal interpreter teardown (to debug it)
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS[-1])
