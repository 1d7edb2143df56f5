"""Protocols: the shipped examples validate; every bad protocol names its field and what is wrong."""

import copy
from pathlib import Path

import pytest
import yaml

from vtrial.data import example_protocol
from vtrial.spec.protocol import ProtocolError, expand, parse_protocol
from vtrial.trial import load_protocol

ROOT = Path(__file__).resolve().parents[2]
GOOD = yaml.safe_load(example_protocol("quickstart").read_text())


def test_quickstart_validates_and_expands():
    p = load_protocol(example_protocol("quickstart"))
    units = list(expand(p, p.cohort.size))
    assert len(units) == 3 * 50 * 16 and units[0] == (0, 0, 0) and units[-1] == (2, 49, 15)
    assert p.arms[1].drugs[0].dose.mg == pytest.approx(0.5)
    assert len(p.content_hash) == 16


def test_hash_ignores_formatting_but_not_content(tmp_path):
    a = parse_protocol(copy.deepcopy(GOOD))
    b = parse_protocol(yaml.safe_load(yaml.safe_dump(GOOD, default_flow_style=True)))
    assert a.content_hash == b.content_hash
    changed = copy.deepcopy(GOOD)
    changed["seed"] = 1
    assert parse_protocol(changed).content_hash != a.content_hash


def test_inline_drug_and_combination_arm():
    d = copy.deepcopy(GOOD)
    d["drugs"] = {
        "cmpd-7": {
            "ic50_nM": {"hERG": 300.0, "ICaL": 2000.0},
            "hill": {"hERG": 1.0},
            "mw_g_mol": 400.0,
            "fu": 0.1,
            "free_cmax_nM": 50.0,
        }
    }
    d["arms"].append(
        {
            "name": "combo",
            "drugs": [
                {"drug": "cmpd-7", "exposure": {"multiple_of_free_cmax": 4}},
                {
                    "drug": "verapamil",
                    "dose": {"value": 120, "unit": "mg"},
                    "start_h": 2.0,
                    "regimen": {"type": "repeated", "interval_h": 8, "count": 3},
                },
            ],
        }
    )
    p = parse_protocol(d)
    assert p.drug("cmpd-7").ic50_vector[0] == 300.0


def bad(mutate):
    d = copy.deepcopy(GOOD)
    mutate(d)
    return d


def setitem(path, value):
    def f(d):
        obj = d
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value

    return f


def delitem(path):
    def f(d):
        obj = d
        for k in path[:-1]:
            obj = obj[k]
        del obj[path[-1]]

    return f


CASES = [
    ("unknown top-level key", setitem(["sampels"], 3), r"sampels: unknown key; did you mean 'sampling'\?"),
    (
        "unknown nested key",
        setitem(["sampling", "samples_per_patinet"], 3),
        r"sampling.samples_per_patinet: unknown key; did you mean 'samples_per_patient'\?",
    ),
    ("unknown arm key", setitem(["arms", 1, "drgus"], []), r"arms\[1\].drgus: unknown key; did you mean 'drugs'\?"),
    ("missing cohort", delitem(["cohort"]), r"cohort: Field required"),
    ("wrong type", setitem(["cohort", "size"], "fifty"), r"cohort.size: Input should be a valid integer"),
    ("zero cohort", setitem(["cohort", "size"], 0), r"cohort.size: Input should be greater than 0"),
    ("negative cohort", setitem(["cohort", "size"], -5), r"cohort.size: Input should be greater than 0"),
    (
        "zero samples",
        setitem(["sampling", "samples_per_patient"], 0),
        r"sampling.samples_per_patient: Input should be greater than 0",
    ),
    (
        "negative dose",
        setitem(["arms", 1, "drugs", 0, "dose", "value"], -500),
        r"arms\[1\].drugs\[0\].dose.value: Input should be greater than 0",
    ),
    (
        "zero dose",
        setitem(["arms", 2, "drugs", 0, "dose", "value"], 0),
        r"arms\[2\].drugs\[0\].dose.value: Input should be greater than 0",
    ),
    (
        "unknown unit",
        setitem(["arms", 1, "drugs", 0, "dose", "unit"], "grains"),
        r"arms\[1\].drugs\[0\].dose.unit: unknown unit 'grains'; use one of ng, ug",
    ),
    (
        "unknown drug",
        setitem(["arms", 1, "drugs", 0, "drug"], "dofetilid"),
        r"arms\[1\].drugs\[0\].drug: unknown drug 'dofetilid'. Did you mean 'dofetilide'\?",
    ),
    (
        "unsorted times",
        setitem(["schedule", "times_h"], [-0.5, 2, 1]),
        r"schedule.times_h: times must be in increasing order",
    ),
    (
        "duplicate times",
        setitem(["schedule", "times_h"], [-0.5, 1, 1, 2]),
        r"schedule.times_h: duplicate times \[1.0\]",
    ),
    ("one time only", setitem(["schedule", "times_h"], [0.0]), r"schedule.times_h: Tuple should have at least 2 items"),
    ("duplicate arm names", setitem(["arms", 2, "name"], "placebo"), r"arms\[2\].name: duplicate arm name 'placebo'"),
    (
        "placebo with drugs",
        setitem(["arms", 0, "drugs"], [{"drug": "dofetilide", "dose": {"value": 1}}]),
        r"arms\[0\]: a placebo arm takes no drugs",
    ),
    ("arm without drugs", setitem(["arms", 1, "drugs"], []), r"arms\[1\]: an arm needs drugs, or placebo: true"),
    (
        "dose and exposure",
        setitem(["arms", 1, "drugs", 0, "exposure"], {"multiple_of_free_cmax": 2}),
        r"arms\[1\].drugs\[0\]: give either dose",
    ),
    (
        "dose without PK",
        setitem(["arms", 1, "drugs", 0, "drug"], "cisapride"),
        r"arms\[1\].drugs\[0\].dose: drug 'cisapride' has no PK",
    ),
    (
        "bad regimen",
        setitem(["arms", 1, "drugs", 0, "regimen"], {"type": "repeated", "count": 3}),
        r"arms\[1\].drugs\[0\].regimen: a repeated regimen needs interval_h",
    ),
    (
        "unknown route",
        setitem(["arms", 1, "drugs", 0, "route"], "rectal"),
        r"arms\[1\].drugs\[0\].route: Input should be 'oral', 'iv_bolus' or 'iv_infusion'",
    ),
    (
        "negative gpus",
        setitem(["compute", "gpus_per_replica"], -1),
        r"compute.gpus_per_replica: Input should be greater than or equal to 0",
    ),
    (
        "zero replicas",
        setitem(["compute", "replicas"], 0),
        r"compute.replicas: Input should be greater than or equal to 1",
    ),
    ("unknown sampler", setitem(["sampling", "sampler"], "magic"), r"sampling.sampler: unknown sampler 'magic'"),
    (
        "unknown sampler setting",
        setitem(["sampling", "settings"], {"nosie_mv": 0.1}),
        r"sampling.settings: unknown settings \['nosie_mv'\]",
    ),
    ("unknown endpoint", setitem(["endpoints"], ["qtcf", "qtcx"]), r"endpoints: unknown endpoints \['qtcx'\]"),
    (
        "bad inline drug",
        setitem(["drugs"], {"x": {"ic50_nM": {"hERG": -1.0}, "mw_g_mol": 300, "fu": 0.5}}),
        r"drugs.x.ic50_nM: hERG = -1.0 must be >= 0",
    ),
    ("no arms", setitem(["arms"], []), r"arms: Tuple should have at least 1 item"),
]


INLINE = {"ic50_nM": {"hERG": 300.0}, "hill": {"hERG": 1.0}, "mw_g_mol": 400.0, "fu": 0.1, "free_cmax_nM": 50.0}


def inline(**changes):
    """An inline drug ``x`` with ``changes``, dosed in an arm of its own."""

    def f(d):
        d["drugs"] = {"x": {**INLINE, **changes}}
        d["arms"].append({"name": "x", "drugs": [{"drug": "x", "exposure": {"multiple_of_free_cmax": 1}}]})

    return f


NAN, INF = float("nan"), float("inf")
# accepted before, then failing after all the sampling (or crashing validate itself): refused up front now
CASES += [
    (
        "infinite dose",
        setitem(["arms", 1, "drugs", 0, "dose", "value"], INF),
        r"arms\[1\].drugs\[0\].dose.value: Input should be a finite number",
    ),
    (
        "NaN dose",
        setitem(["arms", 1, "drugs", 0, "dose", "value"], NAN),
        r"dose.value: Input should be a finite number",
    ),
    (
        "NaN time",
        setitem(["schedule", "times_h"], [-0.5, NAN, 2.0]),
        r"schedule.times_h\[1\]: Input should be a finite number",
    ),
    (
        "infinite time",
        setitem(["schedule", "times_h"], [-0.5, 1.0, INF]),
        r"schedule.times_h\[2\]: Input should be a finite number",
    ),
    ("NaN start", setitem(["arms", 1, "drugs", 0, "start_h"], NAN), r"start_h: Input should be a finite number"),
    (
        "NaN setting",
        setitem(["sampling", "settings"], {"temperature": NAN}),
        r"sampling.settings.temperature: Input should be a finite number",
    ),
    (
        "infinite lambda",
        setitem(["risk"], {"aversion_lambda": INF}),
        r"risk.aversion_lambda: Input should be a finite number",
    ),
    (
        "empty experiment",
        setitem(["tracking"], {"experiment": ""}),
        r"tracking.experiment: String should have at least 1 character",
    ),
    ("NaN hill", inline(hill={"hERG": NAN}), r"drugs.x.hill.hERG: Input should be a finite number"),
    ("zero hill", inline(hill={"hERG": 0.0}), r"drugs.x.hill: hERG = 0.0 must be > 0"),
    ("negative IC50", inline(ic50_nM={"hERG": -1.0}), r"drugs.x.ic50_nM: hERG = -1.0 must be >= 0"),
    ("NaN IC50", inline(ic50_nM={"hERG": NAN}), r"drugs.x.ic50_nM.hERG: Input should be a finite number"),
    ("unknown channel", inline(ic50_nM={"hERGx": 3.0}), r"drugs.x.ic50_nM: unknown channels \['hERGx'\]"),
    (
        "unknown pk key",
        inline(pk={"ka_per_h": 1, "cl_l_h": 2, "v1_l": 3, "vee": 4}),
        r"drugs.x.pk: unknown PK parameters 'vee'",
    ),
    ("missing pk key", inline(pk={"ka_per_h": 1}), r"drugs.x.pk: missing PK parameters \['cl_l_h', 'v1_l'\]"),
]


@pytest.mark.parametrize("name,mutate,message", CASES, ids=[c[0] for c in CASES])
def test_bad_protocol_names_the_field(name, mutate, message):
    with pytest.raises(ProtocolError, match=message):
        parse_protocol(bad(mutate))


FILE_CASES = [
    (
        "missing population",
        setitem(["cohort", "population"], "martians"),
        r"cohort.population: no built-in population 'martians'; built-in: healthy_adults",
    ),
    (
        "missing population file",
        setitem(["cohort", "population"], "pop/martians.yaml"),
        r"cohort.population: population file not found: 'pop/martians.yaml'",
    ),
    (
        "missing table",
        lambda d: d.update(cohort={"table": "nowhere.csv"}),
        r"cohort.table: file not found: nowhere.csv .*give the data folder with --data DIR",
    ),
    ("missing checkpoint", setitem(["sampling", "checkpoint"], "no.pt"), r"sampling.checkpoint: file not found: no.pt"),
]


@pytest.mark.parametrize("name,mutate,message", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_files_a_protocol_names_are_checked_by_load_protocol(name, mutate, message, tmp_path):
    """The spec itself reads no files; ``load_protocol`` checks the ones a protocol names, relative to it."""
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(bad(mutate)))
    parse_protocol(bad(mutate))  # the content alone is valid
    with pytest.raises(ProtocolError, match=message):
        load_protocol(path)


def test_content_hash_is_what_determines_the_samples():
    """Where and how a trial is computed, analysed and tracked does not change its hash; what it samples does."""
    a = parse_protocol(copy.deepcopy(GOOD))
    for section, value in (
        ("compute", {"replicas": 7, "batch_size": 3}),
        ("output", {"dir": "elsewhere"}),
        ("tracking", {"experiment": "other"}),
        ("risk", {"aversion_lambda": 2.0}),
        ("endpoints", ["qtcf"]),
        ("name", "renamed"),
    ):
        assert parse_protocol({**copy.deepcopy(GOOD), section: value}).content_hash == a.content_hash, section
    for section, value in (
        ("herg_model", "dynamic"),
        ("seed", 3),
        ("sampling", {**GOOD["sampling"], "samples_per_patient": 2}),
    ):
        assert parse_protocol({**copy.deepcopy(GOOD), section: value}).content_hash != a.content_hash, section


def test_every_problem_is_reported_at_once():
    d = bad(setitem(["cohort", "size"], 0))
    d["sampling"]["samples_per_patient"] = -1
    d["schedule"]["times_h"] = [3, 1]
    with pytest.raises(ProtocolError) as err:
        parse_protocol(d)
    paths = [p.split(":")[0] for p in err.value.problems]
    assert paths == ["cohort.size", "schedule.times_h", "sampling.samples_per_patient"]


def test_malformed_yaml_gives_line_and_column(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: x\ncohort: {size: 5\nseed: 1\n")
    with pytest.raises(ProtocolError, match=r"malformed YAML at line 3, column 5"):
        load_protocol(f)


def test_missing_protocol_file(tmp_path):
    with pytest.raises(ProtocolError, match="protocol file not found"):
        load_protocol(tmp_path / "nope.yaml")


def test_not_a_mapping(tmp_path):
    f = tmp_path / "list.yaml"
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ProtocolError, match="expected a mapping of protocol fields, got list"):
        load_protocol(f)


@pytest.mark.parametrize(
    "content, message",
    [
        ("name: caf\xe9\n".encode("latin-1"), r"<file>: not UTF-8 text \(byte 0xe9 on line 1\)"),
        (bytes(range(256)) * 4, r"<file>: not UTF-8 text"),
        (("a: " + "[" * 5000 + "]" * 5000 + "\n").encode(), r"<yaml>: nested too deeply to be a protocol"),
        (("{a: " * 3000 + "1" + "}" * 3000).encode(), r"<yaml>: nested too deeply to be a protocol"),
        (b"", r"<root>: expected a mapping of protocol fields, got NoneType"),
    ],
    ids=["latin-1", "binary", "deep lists", "deep mappings", "empty"],
)
def test_unreadable_protocol_files_are_named_not_tracebacks(tmp_path, content, message):
    f = tmp_path / "p.yaml"
    f.write_bytes(content)
    with pytest.raises(ProtocolError, match=message):
        load_protocol(f)
    with pytest.raises(ProtocolError, match=r"\(it is a folder\)"):
        load_protocol(tmp_path)
