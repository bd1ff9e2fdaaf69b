"""core.snapshot: canonical form and id, diffs in plant words, the activation fold; core.toml_write."""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import random
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from floorconsole.core import toml_write
from floorconsole.core.config import validate_plant
from floorconsole.core.snapshot import (
    Activation,
    ModelFiles,
    Outcome,
    SnapshotError,
    canonical_config,
    diff_configs,
    diff_snapshots,
    make_snapshot,
    model_file_stem,
    parse_package_ref,
    plant_order,
    read_model_files,
    render_diff,
    running,
    sha256_hex,
    snapshot_from_canonical,
    with_packages,
)

REPO = Path(__file__).resolve().parents[1]
PLANTS = REPO / "fixtures" / "plants"
MODELS = REPO / "fixtures" / "models"
DEMO = PLANTS / "demo.toml"

RULE = {
    "id": "trip-motor1",
    "signal": "motor1.anomaly_score",
    "op": ">",
    "threshold": 0.8,
    "deadband": 0.05,
    "on_delay": "5s",
    "off_delay": "2s",
    "on_bad_quality": "hold",
    "actions": [
        {"write": "drive1", "address": "co:10", "on": True, "off": False},
        {"publish": "local", "topic": "plant3/line2/alarms", "qos": 1},
        {"alarm": "high", "message": "Motor 1 anomaly"},
    ],
}


def demo_config() -> dict[str, Any]:
    cfg = tomllib.loads(DEMO.read_text(encoding="utf-8"))
    cfg["rules"] = [copy.deepcopy(RULE)]
    return cfg


def demo_files() -> dict[str, ModelFiles]:
    return read_model_files(demo_config(), PLANTS)


def snap(cfg: dict[str, Any], files: dict[str, ModelFiles] | None = None, **meta: Any):
    kwargs = {"parent": None, "author": "eng1", "message": "m", "created": 1.0} | meta
    return make_snapshot(cfg, demo_files() if files is None else files, **kwargs)


def shuffled(v: Any, rng: random.Random) -> Any:
    """The same data with the keys of every table in another order."""
    if isinstance(v, dict):
        items = list(v.items())
        rng.shuffle(items)
        return {k: shuffled(x, rng) for k, x in items}
    if isinstance(v, list):
        return [shuffled(x, rng) for x in v]
    return v


# --- canonical form and id ------------------------------------------------------------------------


def test_id_does_not_depend_on_key_order_metadata_or_where_the_files_are(tmp_path: Path) -> None:
    base = snap(demo_config())
    rng = random.Random(7)
    for _ in range(5):
        assert snap(shuffled(demo_config(), rng)).id == base.id
    # author, message, parent and time are beside the id, not in it
    assert (
        snap(demo_config(), author="eng2", message="other", parent="ab" * 32, created=99.0).id
        == base.id
    )

    # the same plant and model bytes elsewhere on disk, under another package path
    elsewhere = tmp_path / "site" / "plant"
    (tmp_path / "site" / "pkgs").mkdir(parents=True)
    elsewhere.mkdir()
    for suffix in (".onnx", ".json"):
        shutil.copy(
            MODELS / f"motor_anomaly{suffix}", tmp_path / "site" / "pkgs" / f"motor_anomaly{suffix}"
        )
    cfg = demo_config()
    cfg["models"][0]["package"] = "../pkgs/motor_anomaly"
    files = read_model_files(cfg, elsewhere)
    assert snap(cfg, files).id == base.id


def test_canonical_text_is_sorted_compact_json_and_packages_are_refs() -> None:
    s = snap(demo_config())
    text = s.canonical
    doc = json.loads(text)
    assert text == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert sha256_hex(text.encode()) == s.id
    onnx = (MODELS / "motor_anomaly.onnx").read_bytes()
    sidecar = (MODELS / "motor_anomaly.json").read_bytes()
    ref = s.models["motor1_anomaly"]
    assert (ref.onnx_sha, ref.json_sha) == (sha256_hex(onnx), sha256_hex(sidecar))
    assert doc["plant"]["models"][0]["package"] == ref.ref
    assert parse_package_ref(ref.ref) == ref
    assert "../models" not in text
    # read back from its text, it is the same snapshot
    back = snapshot_from_canonical(
        text, parent=None, author="a", message="m", created=1.0, expect_id=s.id
    )
    assert back.config == s.config and back.models == s.models


def test_a_config_taken_from_a_snapshot_makes_the_same_snapshot_without_files() -> None:
    s = snap(demo_config())
    again = make_snapshot(s.plant_config(), parent=None, author="a", message="m", created=2.0)
    assert again.id == s.id
    assert len({s, snap(demo_config())}) == 1  # hashable, by id


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c["rules"][0].__setitem__("threshold", 0.7),
        lambda c: c["rules"][0]["actions"][0].__setitem__("address", "co:11"),
        lambda c: c["rules"][0].__setitem__("deadband", 0.050000000000000003 + 1e-12),
        lambda c: c["signals"][2].__setitem__("scale", 0.01),
        lambda c: c["signals"][0].__setitem__("range", [0, 50.0]),  # 50 and 50.0 differ in TOML
        lambda c: c["signals"].reverse(),
        lambda c: c["devices"][0].__setitem__("poll", "250ms"),
        lambda c: c["edge"].__setitem__("site", "Plant 3 / Line 2 "),
        lambda c: c["models"][0]["inputs"].__setitem__("x", "motor1.vibration.y"),
        lambda c: c.pop("rules"),
        lambda c: c.__setitem__("uplink", {"broker": "local"}),
    ],
)
def test_any_change_of_content_changes_the_id(change: Any) -> None:
    cfg = demo_config()
    change(cfg)
    assert snap(cfg).id != snap(demo_config()).id


def test_a_changed_byte_in_either_model_file_changes_the_id() -> None:
    files = demo_files()["motor1_anomaly"]
    base = snap(demo_config()).id
    onnx = bytearray(files.onnx)
    onnx[len(onnx) // 2] ^= 1
    sidecar = files.sidecar + b"\n"
    ids = {
        snap(demo_config(), {"motor1_anomaly": ModelFiles(bytes(onnx), files.sidecar)}).id,
        snap(demo_config(), {"motor1_anomaly": ModelFiles(files.onnx, sidecar)}).id,
    }
    assert base not in ids and len(ids) == 2


def test_what_cannot_be_a_snapshot_is_refused_with_its_key_path() -> None:
    cfg = demo_config()
    with pytest.raises(
        SnapshotError,
        match=r"models\[0\]\.package: no model files given for "
        r"'motor1_anomaly'",
    ):
        make_snapshot(cfg, {}, parent=None, author="a", message="m", created=0.0)
    cfg["edge"]["commissioned"] = dt.date(2026, 1, 1)
    with pytest.raises(SnapshotError, match=r"edge\.commissioned: a date"):
        snap(cfg)
    cfg = demo_config()
    cfg["rules"][0]["threshold"] = math.inf
    with pytest.raises(SnapshotError, match=r"rules\[0\]\.threshold: inf is not a finite"):
        snap(cfg)
    with pytest.raises(SnapshotError, match=r"files given for 'motor2'"):
        snap(demo_config(), demo_files() | {"motor2": demo_files()["motor1_anomaly"]})
    cfg = demo_config()
    cfg["models"].append(copy.deepcopy(cfg["models"][0]))
    with pytest.raises(SnapshotError, match=r"models\[1\]\.id: 'motor1_anomaly' is already used"):
        snap(cfg)
    cfg = demo_config()
    cfg["models"][0]["package"] = "nowhere/motor_anomaly"
    with pytest.raises(
        SnapshotError,
        match=r"models\[0\]\.package: .*nowhere/motor_anomaly.onnx "
        r"not found",
    ):
        read_model_files(cfg, PLANTS)


def test_tampered_canonical_text_is_refused() -> None:
    s = snap(demo_config())
    text = s.canonical.replace('"threshold":0.8', '"threshold":0.9')
    with pytest.raises(SnapshotError, match="hashes to"):
        snapshot_from_canonical(text, parent=None, author="", message="", created=0, expect_id=s.id)
    spaced = json.dumps(json.loads(s.canonical), sort_keys=True)
    with pytest.raises(SnapshotError, match="not in canonical form"):
        snapshot_from_canonical(spaced, parent=None, author="", message="", created=0)


def test_with_packages_gives_a_config_the_plant_validator_accepts() -> None:
    s = snap(demo_config())
    cfg = with_packages(s.config, {"motor1_anomaly": str(MODELS / "motor_anomaly")})
    plant = validate_plant(cfg, base_dir=PLANTS)
    assert plant.models[0].package == MODELS / "motor_anomaly"
    assert parse_package_ref(s.config["models"][0]["package"]) is not None  # copy, not edited
    assert model_file_stem((MODELS / "motor_anomaly.json").read_bytes(), "x") == "motor_anomaly"
    assert model_file_stem(b'{"onnx": {"file": "../evil.onnx"}}', "fallback") == "fallback"


# --- diff in plant words --------------------------------------------------------------------------


def lines(old: dict[str, Any], new: dict[str, Any], **kw: Any) -> list[str]:
    a, b = snap(old, kw.pop("old_files", None)), snap(new, kw.pop("new_files", None))
    return render_diff(diff_snapshots(a, b, **kw))


def test_diff_of_rule_thresholds_and_delays() -> None:
    new = demo_config()
    new["rules"][0]["threshold"] = 0.7
    new["rules"][0]["on_delay"] = "3s"
    assert lines(demo_config(), new) == ["rule trip-motor1: threshold 0.8 → 0.7; on_delay 5s → 3s"]


def test_diff_of_a_rule_action_and_of_fields_set_and_unset() -> None:
    new = demo_config()
    new["rules"][0]["actions"][0]["address"] = "co:11"
    new["rules"][0]["actions"][1]["topic"] = "plant 3/alarms"
    del new["rules"][0]["deadband"]
    new["rules"][0]["enabled"] = False
    assert lines(demo_config(), new) == [
        "rule trip-motor1: actions[0].address co:10 → co:11; "
        'actions[1].topic plant3/line2/alarms → "plant 3/alarms"; deadband 0.05 → (unset); '
        "enabled (unset) → false"
    ]


def test_diff_of_items_added_removed_and_reordered() -> None:
    old = demo_config()
    old.pop("uplink", None)  # the demo forwards to its own broker; here it has no uplink yet
    new = copy.deepcopy(old)
    new["devices"].append({"id": "drive2", "protocol": "modbus-tcp", "host": "10.0.0.7"})
    new["signals"] = [s for s in new["signals"] if s["id"] != "motor1.run_hours"]
    new["rules"].insert(
        0,
        {
            "id": "hot-motor1",
            "signal": "motor1.temp",
            "op": ">=",
            "threshold": 80,
            "actions": [{"alarm": "medium"}],
        },
    )
    new["uplink"] = {"broker": "local", "topic_prefix": "fc"}
    assert lines(old, new) == [
        "device drive2 added (protocol modbus-tcp, host 10.0.0.7)",
        "signal motor1.run_hours removed",
        "rule hot-motor1 added (signal motor1.temp, op >=, threshold 80, actions ×1)",
        "uplink added (broker local, topic_prefix fc)",
    ]
    swapped = demo_config()
    swapped["signals"][0], swapped["signals"][1] = swapped["signals"][1], swapped["signals"][0]
    assert lines(demo_config(), swapped) == ["signals: order changed"]


def test_diff_of_signals_devices_and_edge() -> None:
    new = demo_config()
    new["signals"][2]["scale"] = 0.01
    new["devices"][0]["host"] = "10.0.0.5"
    new["devices"][0]["port"] = 502
    new["edge"]["site"] = "Plant 3 / Line 2b"
    assert lines(demo_config(), new) == [
        'edge: site "Plant 3 / Line 2" → "Plant 3 / Line 2b"',
        "device drive1: host 127.0.0.1 → 10.0.0.5; port 5020 → 502",
        "signal motor1.temp: scale 0.1 → 0.01",
    ]


def test_diff_of_a_model_package_names_the_files_that_changed_and_the_sidecar_fields() -> None:
    files = demo_files()["motor1_anomaly"]
    doc = json.loads(files.sidecar)
    doc["version"] = "1.1.0"
    doc["thresholds"]["warning"] = 0.5
    doc["scaler"]["clip"] = 4.0
    sidecar = json.dumps(doc).encode()
    onnx = files.onnx + b"\0"
    new_files = {"motor1_anomaly": ModelFiles(onnx, sidecar)}
    only_onnx = {"motor1_anomaly": ModelFiles(onnx, files.sidecar)}
    # the package sha is the one the console and `model inspect` show for the pair
    old = files.ref.package_sha[:6]
    assert old == "117804"  # the fixture package (1200-window drift reference since issue 15)
    assert lines(demo_config(), demo_config(), new_files=only_onnx) == [
        f"model motor1_anomaly: package changed (sha {old} → "
        f"{only_onnx['motor1_anomaly'].ref.package_sha[:6]}; onnx changed)"
    ]

    blobs = {sha256_hex(b): b for b in (files.sidecar, sidecar)}
    new = new_files["motor1_anomaly"].ref.package_sha[:6]
    assert lines(demo_config(), demo_config(), new_files=new_files, sidecar=blobs.get) == [
        f"model motor1_anomaly: package changed (sha {old} → {new}; onnx and sidecar changed); "
        f"sidecar.version 1.0.0 → 1.1.0; sidecar.thresholds.warning "
        f"{json.loads(files.sidecar)['thresholds']['warning']!r} → 0.5; sidecar.scaler changed"
    ]


def test_diff_of_the_same_and_of_equal_content() -> None:
    s = snap(demo_config())
    assert render_diff(diff_snapshots(s, s)) == [f"{s.short} and {s.short} are the same snapshot"]
    assert diff_configs(s.config, copy.deepcopy(s.config)) == []


# --- the activation fold --------------------------------------------------------------------------


def act(seq: int, sid: str, outcome: Outcome, t: float, boot: str = "b1") -> Activation:
    return Activation(seq=seq, snapshot=sid, activated_at=t, boot=boot, outcome=outcome, by="x")


def test_running_follows_applies_health_checks_and_rollbacks() -> None:
    A, B, C = "a" * 64, "b" * 64, "c" * 64
    log = [
        act(1, A, Outcome.APPLIED, 10),
        act(2, A, Outcome.HEALTH_OK, 15),
        act(3, B, Outcome.APPLIED, 20),
        act(4, B, Outcome.HEALTH_FAILED, 25),
        act(5, C, Outcome.APPLIED, 30, boot="b2"),
        act(6, A, Outcome.ROLLED_BACK, 40, "b2"),
    ]
    assert running([]) is None
    assert running(log, at=9.9) is None
    assert running(log, at=10).snapshot == A
    checked = running(log, at=16)
    assert checked.since == 10  # passing its check does not restart the clock
    assert (checked.activation.seq, checked.last.seq) == (1, 2)
    assert running(log, at=22).snapshot == B  # on probation: it runs
    after_failure = running(log, at=26)
    assert (after_failure.snapshot, after_failure.since) == (A, 25)
    assert after_failure.activation.snapshot == B
    assert running(log, at=35).snapshot == C
    assert running(log).snapshot == A
    # the engine may also log the snapshot it brought back: the answer is the same
    with_row = log[:4] + [act(5, A, Outcome.ROLLED_BACK, 25)]
    assert running(with_row).snapshot == A
    # a failure of the very first snapshot leaves nothing running
    assert running([act(1, A, Outcome.APPLIED, 1), act(2, A, Outcome.HEALTH_FAILED, 2)]) is None


def test_running_reads_the_log_in_seq_order_when_the_wall_clock_steps_back() -> None:
    A, B = "a" * 64, "b" * 64
    log = [act(1, A, Outcome.APPLIED, 100), act(2, B, Outcome.APPLIED, 90)]
    assert running(log).snapshot == B
    # wall time 95 came twice: before A's row, and again after B's; the later answer wins
    assert running(log, at=95).snapshot == B
    assert running(log, at=85) is None


# --- the TOML writer ------------------------------------------------------------------------------


@pytest.mark.parametrize("plant", sorted(PLANTS.glob("*.toml")), ids=lambda p: p.name)
def test_every_fixture_plant_file_round_trips(plant: Path) -> None:
    doc = tomllib.loads(plant.read_text(encoding="utf-8"))
    assert tomllib.loads(toml_write.dumps(doc)) == doc


def test_the_demo_with_rules_reads_like_a_plant_file() -> None:
    cfg = plant_order(demo_config())
    text = toml_write.dumps(cfg)
    assert tomllib.loads(text) == cfg
    assert text.startswith('[edge]\nid = "line2-press"\n')
    assert 'inputs = { x = "motor1.vibration.x", y = "motor1.vibration.y", z = ' in text
    assert (
        'actions = [\n  { write = "drive1", address = "co:10", on = true, off = false },\n' in text
    )
    assert '\n[[rules]]\nid = "trip-motor1"\n' in text


def test_toml_writer_escapes_quotes_keys_and_holds_every_toml_type() -> None:
    doc = {
        "title": 'a "quoted" \\ back\tslash\nnew line \x00 \x7f é ✓',
        "": "empty key",
        "dotted.key": {"inner key": [1, -2, 3.5, -0.0, 1e300, 5e-324, True]},
        "big": 2**63 - 1,
        "small": -(2**63),
        "when": dt.datetime(2026, 11, 23, 14, 0, 0, 123456, tzinfo=dt.UTC),
        "local": dt.datetime(2026, 11, 23, 14, 0),
        "day": dt.date(2026, 11, 23),
        "clock": dt.time(7, 30, 1, 5),
        "offset": dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-5, minutes=-30))),
        "inf": math.inf,
        "ninf": -math.inf,
        "empty_list": [],
        "empty_table": {},
        "nested": [[1, 2], ["a"], []],
        "tables": [{"a": 1}, {"b": {"c": [{"d": 1}, {}]}}],
        "mixed": [1, {"x": 1}],
    }
    back = tomllib.loads(toml_write.dumps(doc))
    assert back == doc
    assert math.isnan(tomllib.loads(toml_write.dumps({"n": math.nan}))["n"])
    with pytest.raises(toml_write.TomlWriteError, match=r"big: .* 64-bit"):
        toml_write.dumps({"big": 2**63})
    with pytest.raises(toml_write.TomlWriteError, match=r"s\.t: a lone surrogate"):
        toml_write.dumps({"s": {"t": "\ud800"}})
    with pytest.raises(toml_write.TomlWriteError, match=r"x\[0\]: TOML cannot hold a set"):
        toml_write.dumps({"x": [set()]})


_keys = st.text(min_size=0, max_size=8)


def plant_like(floats: st.SearchStrategy[float]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts shaped like a plant file: tables, arrays of tables, rules with arrays of inline
    tables, and other keys at the top, with values nested a few levels."""
    scalars = st.one_of(
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        floats,
        st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12),
    )
    values = st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=4)
        ),
        max_leaves=12,
    )
    tables = st.dictionaries(_keys, values, max_size=6)
    sections = st.fixed_dictionaries(
        {},
        optional={
            "edge": tables,
            "brokers": st.lists(tables, max_size=3),
            "devices": st.lists(tables, max_size=3),
            "signals": st.lists(tables, max_size=4),
            "rules": st.lists(
                st.fixed_dictionaries(
                    {"id": _keys, "threshold": floats, "actions": st.lists(tables, max_size=3)}
                ),
                max_size=3,
            ),
            "uplink": tables,
        },
    )
    return sections.flatmap(
        lambda d: st.dictionaries(_keys, values, max_size=3).map(lambda extra: extra | d)
    )


@settings(max_examples=200, deadline=None)
@given(plant_like(st.floats(allow_nan=False)))
def test_toml_writer_round_trips_generated_plant_like_dicts(doc: dict[str, Any]) -> None:
    assert tomllib.loads(toml_write.dumps(doc)) == doc


@settings(max_examples=60, deadline=None)
@given(
    plant_like(st.floats(allow_nan=False, allow_infinity=False)), st.randoms(use_true_random=False)
)
def test_canonical_form_is_stable_for_generated_configs(
    doc: dict[str, Any], rng: random.Random
) -> None:
    doc.pop("models", None)  # [[models]] needs files; the other tests cover it
    canon, _ = canonical_config(doc)
    again, _ = canonical_config(shuffled(doc, rng))
    assert json.dumps(canon, sort_keys=True) == json.dumps(again, sort_keys=True)
    # and the plant file of a snapshot reads back as the same snapshot
    assert (
        make_snapshot(
            tomllib.loads(toml_write.dumps(doc)), parent=None, author="", message="", created=0
        ).id
        == make_snapshot(doc, parent=None, author="", message="", created=0).id
    )
