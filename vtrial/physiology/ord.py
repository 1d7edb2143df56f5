"""The O'Hara–Rudy (ORd) human ventricular action potential under ion-channel block, batched.

The model of O'Hara, Virág, Varró and Rudy, PLoS Comput Biol 2011 (doi:10.1371/journal.pcbi.1002061):
41 state variables (membrane potential, Na⁺/K⁺/Ca²⁺ in the cytosol, subspace and SR, gates of INa,
INaL, Ito, ICaL, IKr, IKs, IK1, RyR release and CaMK), with its original Hodgkin–Huxley IKr. Drug block
is simple pore block, as in CiPA's conductance-block simulations: channel k's maximal conductance (for
ICaL its permeabilities) is multiplied by 1 − b_k, with b_k the block fraction in ``CHANNELS`` order.

Integration: Rush–Larsen (each gate, and the relaxations of RyR release and of the ICaL n gate, advanced
exactly for the step under frozen voltage) and forward Euler for voltage and concentrations, with a
0.005 ms step through the stimulus and upstroke and then a step that keeps each voltage change under
``dv_max_mV`` (0.01–0.5 ms). A batch of B cells (one block vector each) advances together: NumPy does
the arithmetic once for all. Pure computation.

``pace(block, beats)`` paces from the published drug-free steady state (or a given state) and returns
each cell's APD90 at every beat: time from the upstroke (−40 mV) to 90 % repolarization towards the
resting potential. A cell that has not repolarized by the next stimulus (repolarization failure, or an early
afterdepolarization that keeps it up) reads ``cycle_ms``.
"""

from __future__ import annotations

import numpy as np

from vtrial.physiology.block import CHANNELS

R, T, F = 8314.0, 310.0, 96485.0
RTF = R * T / F
NAO, CAO, KO = 140.0, 1.8, 5.4
L_CM, RAD_CM = 0.01, 0.0011
VCELL = 1000 * 3.14 * RAD_CM * RAD_CM * L_CM
ACAP = 2 * (2 * 3.14 * RAD_CM * RAD_CM + 2 * 3.14 * RAD_CM * L_CM)
VMYO, VNSR, VJSR, VSS = 0.68 * VCELL, 0.0552 * VCELL, 0.0048 * VCELL, 0.02 * VCELL
STIM_UA_PER_UF, STIM_MS = -80.0, 0.5
UPSTROKE_DT_MS, UPSTROKE_MS = 0.005, 10.0  # fixed small steps through the stimulus and upstroke

# CiPA's optimized ORd (Dutta et al., Front Physiol 2017, doi:10.3389/fphys.2017.00616): factors on the
# 2011 conductances, fitted so that the cell's response to drug block matches human myocytes
CIPA_V1_FACTORS = {"hERG": 1.013, "IKs": 1.870, "IK1": 1.698, "ICaL": 1.007, "INaL": 2.661}

# endocardial cell, paced at 1 Hz to steady state (O'Hara et al. 2011, the published initial values)
STEADY_STATE = {
    "v": -87.84,
    "nai": 7.23,
    "nass": 7.23,
    "ki": 143.79,
    "kss": 143.79,
    "cai": 8.54e-5,
    "cass": 8.43e-5,
    "cansr": 1.61,
    "cajsr": 1.56,
    "m": 0.0074621,
    "hf": 0.692591,
    "hs": 0.692574,
    "j": 0.692477,
    "hsp": 0.448501,
    "jp": 0.692413,
    "mL": 0.000194015,
    "hL": 0.496116,
    "hLp": 0.265885,
    "a": 0.00101185,
    "iF": 0.999542,
    "iS": 0.589579,
    "ap": 0.000515567,
    "iFp": 0.999542,
    "iSp": 0.641861,
    "d": 2.43015e-9,
    "ff": 1.0,
    "fs": 0.910671,
    "fcaf": 1.0,
    "fcas": 0.99982,
    "jca": 0.999977,
    "nca": 0.00267171,
    "ffp": 1.0,
    "fcafp": 1.0,
    "xrf": 8.26608e-6,
    "xrs": 0.453268,
    "xs1": 0.270492,
    "xs2": 0.0001963,
    "xk1": 0.996801,
    "Jrelnp": 2.53943e-5,
    "Jrelp": 3.17262e-7,
    "CaMKt": 0.0124065,
}


def _ghk_ratio(vfrt, z):
    """z·v·F/(RT) / (exp(z·v·F/(RT)) − 1), finite at v = 0."""
    x = z * vfrt
    small = np.abs(x) < 1e-6
    return np.where(small, 1.0 - x / 2, x / np.where(small, 1.0, np.expm1(x)))


def _naca(v_frt, na, ca):
    """Na⁺/Ca²⁺ exchanger flux terms (JncxNa, JncxCa) and its Ca activation at [Na], [Ca] (mM)."""
    kna1, kna2, kna3, kasymm = 15.0, 5.0, 88.12, 12.5
    wna, wca, wnaca, kcaon, kcaoff = 6.0e4, 6.0e4, 5.0e3, 1.5e6, 5.0e3
    hca = np.exp(0.1670 * v_frt)
    hna = np.exp(0.5224 * v_frt)
    h1 = 1 + na / kna3 * (1 + hna)
    h2 = na * hna / (kna3 * h1)
    h3 = 1.0 / h1
    h4 = 1.0 + na / kna1 * (1 + na / kna2)
    h5 = na * na / (h4 * kna1 * kna2)
    h6 = 1.0 / h4
    h7 = 1.0 + NAO / kna3 * (1.0 + 1.0 / hna)
    h8 = NAO / (kna3 * hna * h7)
    h9 = 1.0 / h7
    h10 = kasymm + 1.0 + NAO / kna1 * (1.0 + NAO / kna2)
    h11 = NAO * NAO / (h10 * kna1 * kna2)
    h12 = 1.0 / h10
    k1, k2 = h12 * CAO * kcaon, kcaoff
    k3pp = h8 * wnaca
    k3 = h9 * wca + k3pp
    k4pp = h2 * wnaca
    k4 = h3 * wca / hca + k4pp
    k5, k6 = kcaoff, h6 * ca * kcaon
    k7, k8 = h5 * h2 * wna, h8 * h11 * wna
    x1 = k2 * k4 * (k7 + k6) + k5 * k7 * (k2 + k3)
    x2 = k1 * k7 * (k4 + k5) + k4 * k6 * (k1 + k8)
    x3 = k1 * k3 * (k7 + k6) + k8 * k6 * (k2 + k3)
    x4 = k2 * k8 * (k4 + k5) + k3 * k5 * (k1 + k8)
    s = x1 + x2 + x3 + x4
    e1, e2, e3, e4 = x1 / s, x2 / s, x3 / s, x4 / s
    allo = 1.0 / (1.0 + (150.0e-6 / ca) ** 2)
    return allo * (3.0 * (e4 * k7 - e1 * k8) + e3 * k4pp - e2 * k3pp + 2.0 * (e2 * k2 - e1 * k1))


def _inak(v_frt, nai, ki):
    k1p, k1m, k2p, k2m, k3p, k3m, k4p, k4m = 949.5, 182.4, 687.2, 39.4, 1899.0, 79300.0, 639.0, 40.0
    delta = -0.1550
    knai = 9.073 * np.exp(delta * v_frt / 3.0)
    knao = 27.78 * np.exp((1.0 - delta) * v_frt / 3.0)
    kki, kko, mgadp, mgatp, kmgatp, h = 0.5, 0.3582, 0.05, 9.8, 1.698e-7, 1.0e-7
    p = 4.2 / (1.0 + h / 1.698e-7 + nai / 224.0 + ki / 292.0)
    den_i = (1.0 + nai / knai) ** 3 + (1.0 + ki / kki) ** 2 - 1.0
    den_o = (1.0 + NAO / knao) ** 3 + (1.0 + KO / kko) ** 2 - 1.0
    a1 = k1p * (nai / knai) ** 3 / den_i
    b1 = k1m * mgadp
    a2 = k2p
    b2 = k2m * (NAO / knao) ** 3 / den_o
    a3 = k3p * (KO / kko) ** 2 / den_o
    b3 = k3m * p * h / (1.0 + mgatp / kmgatp)
    a4 = k4p * mgatp / kmgatp / (1.0 + mgatp / kmgatp)
    b4 = k4m * (ki / kki) ** 2 / den_i
    x1 = a4 * a1 * a2 + b2 * b4 * b3 + a2 * b4 * b3 + b3 * a1 * a2
    x2 = b2 * b1 * b4 + a1 * a2 * a3 + a3 * b1 * b4 + a2 * a3 * b4
    x3 = a2 * a3 * a4 + b3 * b2 * b1 + b2 * b1 * a4 + a3 * a4 * b1
    x4 = b4 * b3 * b2 + a3 * a4 * a1 + b2 * a4 * a1 + b3 * b2 * a1
    s = x1 + x2 + x3 + x4
    return 30.0 * (3.0 * (x1 / s * a3 - x2 / s * b3) + 2.0 * (x4 / s * b1 - x3 / s * a1))


def _relax(y, inf, tau, dt):
    """Rush–Larsen: y relaxing to ``inf`` with time constant ``tau`` over ``dt`` (frozen voltage)."""
    return inf - (inf - y) * np.exp(-dt / tau)


def _step(y: dict, scale: dict, stim, dt_min_ms: float, dt_max_ms: float, dv_max_mV: float) -> float:
    """Advance the state ``y`` (dict of (B,) arrays) in place by one step, chosen so that no cell's voltage
    moves more than ``dv_max_mV`` (within [dt_min_ms, dt_max_ms]); returns the step (ms)."""
    v, nai, nass, ki, kss = y["v"], y["nai"], y["nass"], y["ki"], y["kss"]
    cai, cass, cansr, cajsr = y["cai"], y["cass"], y["cansr"], y["cajsr"]
    camkb = 0.05 * (1.0 - y["CaMKt"]) / (1.0 + 0.0015 / cass)
    camka = camkb + y["CaMKt"]
    fp = 1.0 / (1.0 + 0.15 / camka)  # CaMK-phosphorylated share, all targets
    ena = RTF * np.log(NAO / nai)
    ek = RTF * np.log(KO / ki)
    eks = RTF * np.log((KO + 0.01833 * NAO) / (ki + 0.01833 * nai))
    vfrt = v / RTF

    # INa
    mss = 1.0 / (1.0 + np.exp(-(v + 39.57) / 9.871))
    tm = 1.0 / (6.765 * np.exp((v + 11.64) / 34.77) + 8.552 * np.exp(-(v + 77.42) / 5.955))
    hss = 1.0 / (1 + np.exp((v + 82.90) / 6.086))
    thf = 1.0 / (1.432e-5 * np.exp(-(v + 1.196) / 6.285) + 6.149 * np.exp((v + 0.5096) / 20.27))
    ths = 1.0 / (0.009794 * np.exp(-(v + 17.95) / 28.05) + 0.3343 * np.exp((v + 5.730) / 56.66))
    tj = 2.038 + 1.0 / (0.02136 * np.exp(-(v + 100.6) / 8.281) + 0.3052 * np.exp((v + 0.9941) / 38.45))
    hssp = 1.0 / (1 + np.exp((v + 89.1) / 6.086))
    h = 0.99 * y["hf"] + 0.01 * y["hs"]
    hp = 0.99 * y["hf"] + 0.01 * y["hsp"]
    ina = 75.0 * scale["INa"] * (v - ena) * y["m"] ** 3 * ((1.0 - fp) * h * y["j"] + fp * hp * y["jp"])
    # INaL
    mlss = 1.0 / (1.0 + np.exp(-(v + 42.85) / 5.264))
    hlss = 1.0 / (1.0 + np.exp((v + 87.61) / 7.488))
    hlssp = 1.0 / (1.0 + np.exp((v + 93.81) / 7.488))
    inal = 0.0075 * scale["INaL"] * (v - ena) * y["mL"] * ((1.0 - fp) * y["hL"] + fp * y["hLp"])
    # Ito (endocardial)
    ass = 1.0 / (1.0 + np.exp(-(v - 14.34) / 14.82))
    ta = 1.0515 / (
        1.0 / (1.2089 * (1.0 + np.exp(-(v - 18.4099) / 29.3814))) + 3.5 / (1.0 + np.exp((v + 100.0) / 29.3814))
    )
    iss = 1.0 / (1.0 + np.exp((v + 43.94) / 5.711))
    tif = 4.562 + 1 / (0.3933 * np.exp(-(v + 100.0) / 100.0) + 0.08004 * np.exp((v + 50.0) / 16.59))
    tis = 23.62 + 1 / (0.001416 * np.exp(-(v + 96.52) / 59.05) + 1.780e-8 * np.exp((v + 114.1) / 8.079))
    aif = 1.0 / (1.0 + np.exp((v - 213.6) / 151.2))
    assp = 1.0 / (1.0 + np.exp(-(v - 24.34) / 14.82))
    dti = (1.354 + 1.0e-4 / (np.exp((v - 167.4) / 15.89) + np.exp(-(v - 12.23) / 0.2154))) * (
        1.0 - 0.5 / (1.0 + np.exp((v + 70.0) / 20.0))
    )
    i_ = aif * y["iF"] + (1 - aif) * y["iS"]
    ip = aif * y["iFp"] + (1 - aif) * y["iSp"]
    ito = 0.02 * scale["Ito"] * (v - ek) * ((1.0 - fp) * y["a"] * i_ + fp * y["ap"] * ip)
    # ICaL, ICaNa, ICaK
    dss = 1.0 / (1.0 + np.exp(-(v + 3.940) / 4.230))
    td = 0.6 + 1.0 / (np.exp(-0.05 * (v + 6.0)) + np.exp(0.09 * (v + 14.0)))
    fss = 1.0 / (1.0 + np.exp((v + 19.58) / 3.696))
    tff = 7.0 + 1.0 / (0.0045 * np.exp(-(v + 20.0) / 10.0) + 0.0045 * np.exp((v + 20.0) / 10.0))
    tfs = 1000.0 + 1.0 / (0.000035 * np.exp(-(v + 5.0) / 4.0) + 0.000035 * np.exp((v + 5.0) / 6.0))
    tfcaf = 7.0 + 1.0 / (0.04 * np.exp(-(v - 4.0) / 7.0) + 0.04 * np.exp((v - 4.0) / 7.0))
    tfcas = 100.0 + 1.0 / (0.00012 * np.exp(-v / 3.0) + 0.00012 * np.exp(v / 7.0))
    afcaf = 0.3 + 0.6 / (1.0 + np.exp((v - 10.0) / 10.0))
    f = 0.6 * y["ff"] + 0.4 * y["fs"]
    fca = afcaf * y["fcaf"] + (1 - afcaf) * y["fcas"]
    fpp = 0.6 * y["ffp"] + 0.4 * y["fs"]
    fcap = afcaf * y["fcafp"] + (1 - afcaf) * y["fcas"]
    km2n = y["jca"]
    anca = 1.0 / (1000.0 / km2n + (1.0 + 0.002 / cass) ** 4)
    gate = y["d"] * (f * (1.0 - y["nca"]) + y["jca"] * fca * y["nca"])
    gatep = y["d"] * (fpp * (1.0 - y["nca"]) + y["jca"] * fcap * y["nca"])
    drive = (1.0 - fp) * gate + 1.1 * fp * gatep
    pca = 0.0001 * scale["ICaL"]
    g2, g1 = _ghk_ratio(vfrt, 2.0), _ghk_ratio(vfrt, 1.0)
    phi_cal = 2.0 * F * g2 * (cass * np.exp(2.0 * vfrt) - 0.341 * CAO)
    phi_cana = F * g1 * (0.75 * nass * np.exp(vfrt) - 0.75 * NAO)
    phi_cak = F * g1 * (0.75 * kss * np.exp(vfrt) - 0.75 * KO)
    ical = pca * phi_cal * drive
    icana = 0.00125 * pca * phi_cana * drive
    icak = 3.574e-4 * pca * phi_cak * drive
    # IKr (Hodgkin–Huxley, original ORd)
    xrss = 1.0 / (1.0 + np.exp(-(v + 8.337) / 6.789))
    txrf = 12.98 + 1.0 / (0.3652 * np.exp((v - 31.66) / 3.869) + 4.123e-5 * np.exp(-(v - 47.78) / 20.38))
    txrs = 1.865 + 1.0 / (0.06629 * np.exp((v - 34.70) / 7.355) + 1.128e-5 * np.exp(-(v - 29.74) / 25.94))
    axrf = 1.0 / (1.0 + np.exp((v + 54.81) / 38.21))
    xr = axrf * y["xrf"] + (1 - axrf) * y["xrs"]
    rkr = 1.0 / (1.0 + np.exp((v + 55.0) / 75.0)) / (1.0 + np.exp((v - 10.0) / 30.0))
    ikr = 0.046 * scale["hERG"] * np.sqrt(KO / 5.4) * xr * rkr * (v - ek)
    # IKs
    xs1ss = 1.0 / (1.0 + np.exp(-(v + 11.60) / 8.932))
    txs1 = 817.3 + 1.0 / (2.326e-4 * np.exp((v + 48.28) / 17.80) + 0.001292 * np.exp(-(v + 210.0) / 230.0))
    txs2 = 1.0 / (0.01 * np.exp((v - 50.0) / 20.0) + 0.0193 * np.exp(-(v + 66.54) / 31.0))
    ksca = 1.0 + 0.6 / (1.0 + (3.8e-5 / cai) ** 1.4)
    iks = 0.0034 * scale["IKs"] * ksca * y["xs1"] * y["xs2"] * (v - eks)
    # IK1
    xk1ss = 1.0 / (1.0 + np.exp(-(v + 2.5538 * KO + 144.59) / (1.5692 * KO + 3.8115)))
    txk1 = 122.2 / (np.exp(-(v + 127.2) / 20.36) + np.exp((v + 236.8) / 69.33))
    rk1 = 1.0 / (1.0 + np.exp((v + 105.8 - 2.6 * KO) / 9.493))
    ik1 = 0.1908 * scale["IK1"] * np.sqrt(KO) * rk1 * y["xk1"] * (v - ek)
    # exchanger, pump, background currents
    inaca_i = 0.8 * 0.0008 * _naca(vfrt, nai, cai)
    inaca_ss = 0.2 * 0.0008 * _naca(vfrt, nass, cass)
    inak = _inak(vfrt, nai, ki)
    ikb = 0.003 * (v - ek) / (1.0 + np.exp(-(v - 14.48) / 18.34))
    inab = 3.75e-10 * F * g1 * (nai * np.exp(vfrt) - NAO)
    icab = 2.5e-8 * 2.0 * F * g2 * (cai * np.exp(2.0 * vfrt) - 0.341 * CAO)
    ipca = 0.0005 * cai / (0.0005 + cai)
    dv = -(
        ina
        + inal
        + ito
        + ical
        + icana
        + icak
        + ikr
        + iks
        + ik1
        + inaca_i
        + inaca_ss
        + inak
        + inab
        + ikb
        + ipca
        + icab
        + stim
    )

    # fluxes
    jdiffna, jdiffk, jdiff = (nass - nai) / 2.0, (kss - ki) / 2.0, (cass - cai) / 0.2
    rel_gain = 1.0 / (1.0 + (1.5 / cajsr) ** 8)
    tau_rel = np.maximum(4.75 / (1.0 + 0.0123 / cajsr), 0.001)
    tau_relp = np.maximum(1.25 * 4.75 / (1.0 + 0.0123 / cajsr), 0.001)
    jrel = (1.0 - fp) * y["Jrelnp"] + fp * y["Jrelp"]
    jupnp = 0.004375 * cai / (cai + 0.00092)
    jupp = 2.75 * 0.004375 * cai / (cai + 0.00092 - 0.00017)
    jup = (1.0 - fp) * jupnp + fp * jupp - 0.0039375 * cansr / 15.0
    jtr = (cansr - cajsr) / 100.0
    bcai = 1.0 / (1.0 + 0.05 * 0.00238 / (0.00238 + cai) ** 2 + 0.07 * 0.0005 / (0.0005 + cai) ** 2)
    bcass = 1.0 / (1.0 + 0.047 * 0.00087 / (0.00087 + cass) ** 2 + 1.124 * 0.0087 / (0.0087 + cass) ** 2)
    bcajsr = 1.0 / (1.0 + 10.0 * 0.8 / (0.8 + cajsr) ** 2)

    dt = float(np.clip(dv_max_mV / max(float(np.abs(dv).max()), 1e-9), dt_min_ms, dt_max_ms))
    # Euler: voltage, concentrations, CaMK
    a_f = ACAP / F
    y["v"] = v + dt * dv
    y["nai"] = nai + dt * (-(ina + inal + 3.0 * inaca_i + 3.0 * inak + inab) * a_f / VMYO + jdiffna * VSS / VMYO)
    y["nass"] = nass + dt * (-(icana + 3.0 * inaca_ss) * a_f / VSS - jdiffna)
    y["ki"] = ki + dt * (-(ito + ikr + iks + ik1 + ikb + stim - 2.0 * inak) * a_f / VMYO + jdiffk * VSS / VMYO)
    y["kss"] = kss + dt * (-icak * a_f / VSS - jdiffk)
    y["cai"] = cai + dt * bcai * (
        -(ipca + icab - 2.0 * inaca_i) * a_f / (2.0 * VMYO) - jup * VNSR / VMYO + jdiff * VSS / VMYO
    )
    y["cass"] = cass + dt * bcass * (-(ical - 2.0 * inaca_ss) * a_f / (2.0 * VSS) + jrel * VJSR / VSS - jdiff)
    y["cansr"] = cansr + dt * (jup - jtr * VJSR / VNSR)
    y["cajsr"] = cajsr + dt * bcajsr * (jtr - jrel)
    y["CaMKt"] = y["CaMKt"] + dt * (0.05 * camkb * camka - 0.00068 * y["CaMKt"])
    # Rush–Larsen: gates and first-order relaxations
    for name, inf, tau in (
        ("m", mss, tm),
        ("hf", hss, thf),
        ("hs", hss, ths),
        ("j", hss, tj),
        ("hsp", hssp, 3.0 * ths),
        ("jp", hss, 1.46 * tj),
        ("mL", mlss, tm),
        ("hL", hlss, 200.0),
        ("hLp", hlssp, 600.0),
        ("a", ass, ta),
        ("iF", iss, tif),
        ("iS", iss, tis),
        ("ap", assp, ta),
        ("iFp", iss, dti * tif),
        ("iSp", iss, dti * tis),
        ("d", dss, td),
        ("ff", fss, tff),
        ("fs", fss, tfs),
        ("fcaf", fss, tfcaf),
        ("fcas", fss, tfcas),
        ("jca", fss, 75.0),
        ("ffp", fss, 2.5 * tff),
        ("fcafp", fss, 2.5 * tfcaf),
        ("xrf", xrss, txrf),
        ("xrs", xrss, txrs),
        ("xs1", xs1ss, txs1),
        ("xs2", xs1ss, txs2),
        ("xk1", xk1ss, txk1),
        ("nca", anca * 1000.0 / km2n, 1.0 / km2n),
        ("Jrelnp", 0.5 * 4.75 * -ical * rel_gain, tau_rel),
        ("Jrelp", 0.5 * 1.25 * 4.75 * -ical * rel_gain, tau_relp),
    ):
        y[name] = _relax(y[name], inf, tau, dt)
    return dt


def conductance_scales(block, base: dict | None = None) -> dict:
    """Channel name → (B,) conductance multiplier: ``base`` (channel → factor on ORd's value; default 1)
    times the unblocked fraction 1 − b, from block fractions (B, 7) in ``CHANNELS`` order."""
    b = np.atleast_2d(np.asarray(block, float))
    if b.shape[-1] != len(CHANNELS) or b.ndim != 2:
        raise ValueError(f"block must have shape (B, {len(CHANNELS)}) in order {CHANNELS}; got {np.shape(block)}")
    if not ((b >= 0) & (b < 1)).all():
        raise ValueError("block fractions must lie in [0, 1)")
    base = base or {}
    return {ch: float(base.get(ch, 1.0)) * (1.0 - b[:, k]) for k, ch in enumerate(CHANNELS)}


def pace(
    block,
    beats: int,
    cycle_ms: float = 1000.0,
    dv_max_mV: float = 0.5,
    state: dict | None = None,
    base: dict | None = None,
):
    """Pace B cells ``beats`` times; returns (APD90 ms per beat (beats, B), final state).

    ``base``: factors on the 2011 model's conductances (``CIPA_V1_FACTORS``, say), before block. ``state``
    (from an earlier call, arrays of B or of 1) continues pacing; by default each cell starts from
    ``STEADY_STATE``."""
    scale = conductance_scales(block, base)
    n = len(scale["hERG"])
    y = {k: np.broadcast_to(np.asarray((state or STEADY_STATE)[k], float), (n,)).copy() for k in STEADY_STATE}
    apd = np.empty((beats, n))
    for beat in range(beats):
        v_rest = y["v"].copy()
        v_peak = y["v"].copy()
        t_up = np.full(n, np.nan)
        t_end = np.full(n, np.nan)
        t = 0.0
        while t < cycle_ms:
            stim = STIM_UA_PER_UF if t < STIM_MS else 0.0
            lo, hi = (UPSTROKE_DT_MS, UPSTROKE_DT_MS) if t < UPSTROKE_MS else (0.01, 0.5)
            v_old = y["v"].copy()
            dt = _step(y, scale, stim, lo, min(hi, cycle_ms - t), dv_max_mV)
            t += dt
            v = y["v"]
            up = np.isnan(t_up) & (v > -40.0) & (v_old <= -40.0)
            t_up[up] = t - dt + dt * (-40.0 - v_old[up]) / (v[up] - v_old[up])
            v_peak = np.maximum(v_peak, v)
            thr = v_peak - 0.9 * (v_peak - v_rest)
            down = np.isfinite(t_up) & np.isnan(t_end) & (t > t_up + 5.0) & (v < thr) & (v_old >= thr)
            t_end[down] = t - dt + dt * (thr[down] - v_old[down]) / (v[down] - v_old[down])
        apd[beat] = np.where(np.isfinite(t_end), t_end - t_up, cycle_ms)
    return apd, y
