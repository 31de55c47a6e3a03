"""Jepsen EDN importer and format auto-detection."""
from __future__ import annotations

from pathlib import Path

import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaos.errors import BadInput
from chaos.history.importers import jepsen_edn
from chaos.history.importers.detect import detect, load_any

REPO = Path(__file__).resolve().parent.parent
EDN = REPO / "histories" / "edn"
ETCD = REPO.parent / "shared" / "corpora" / "porcupine" / "jepsen" / "etcd_000.log"


def write(tmp_path: Path, text: str, name: str = "history.edn") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def rows(h):
    return [tuple(r) for r in h.pairs[["process", "f", "key", "value", "result", "type"]]
            .itertuples(index=False)]


def test_sniff():
    assert jepsen_edn.sniff("{:type :invoke, :f :read}")
    assert jepsen_edn.sniff("[{:type :invoke}\n {:type :ok}]")
    assert jepsen_edn.sniff("; comment\n#jepsen.history.Op{:index 0}")
    assert not jepsen_edn.sniff('{"type": "invoke"}')
    assert not jepsen_edn.sniff("INFO  jepsen.util - 0\t:invoke\t:read\tnil")
    assert not jepsen_edn.sniff("hello")


def test_keyed_register_with_nemesis():
    h = jepsen_edn.load(EDN / "register-independent-stale.edn")
    client = h.client()
    assert set(client["key"]) == {0, 1}
    w = client.iloc[0]
    assert (w["f"], w["key"], w["value"], w["result"], w["type"]) == ("write", 0, 1, 1, "ok")
    cas = client[client["f"] == "cas"].iloc[0]
    assert cas["value"] == [5, 2] and cas["type"] == "fail"
    nem = h.nemesis()
    assert list(nem["f"]) == ["start", "stop"] and list(nem["type"]) == ["ok", "ok"]
    assert nem.iloc[0]["result"] == ["isolated", {"n1": ["n2", "n3"]}]
    info = client[client["type"] == "info"].iloc[0]
    assert info["error"] == "timeout" and info["key"] == 0
    assert h.pairs["invoke_time"].iloc[0] == 10_000_000


def test_unkeyed_cas_register_is_not_split():
    h = jepsen_edn.load(EDN / "cas-register-valid.edn")
    assert set(h.pairs["key"].map(repr)) == {"None"}
    cas = h.pairs[h.pairs["f"] == "cas"]
    assert list(cas["value"]) == [[1, 2], [1, 3]]


def test_cas_only_unkeyed_history_is_not_split(tmp_path):
    p = write(tmp_path, "{:type :invoke, :f :cas, :value [1 2], :process 0}\n"
                        "{:type :ok, :f :cas, :value [1 2], :process 0}\n")
    assert jepsen_edn.load(p).pairs.iloc[0]["value"] == [1, 2]


def test_keyed_cas_is_split(tmp_path):
    p = write(tmp_path, "{:type :invoke, :f :cas, :value [7 [1 2]], :process 0}\n"
                        "{:type :ok, :f :cas, :value [7 [1 2]], :process 0}\n")
    r = jepsen_edn.load(p).pairs.iloc[0]
    assert (r["key"], r["value"], r["result"]) == (7, [1, 2], [1, 2])


def test_vector_form_set_workload_reads_become_read_set():
    h = jepsen_edn.load(EDN / "set-valid.edn")
    reads = h.pairs[h.pairs["f"] == "read-set"]
    assert list(reads["result"]) == [[0, 1], [0, 1, 3]]  # sets -> sorted lists
    info = h.pairs[h.pairs["type"] == "info"].iloc[0]
    assert info["error"] == ["timeout", "no answer"]


def test_records_without_time_use_index_order():
    h = jepsen_edn.load(EDN / "set-lost.edn")
    assert list(h.pairs["invoke_time"]) == list(h.pairs["invoke_index"])
    last = h.pairs[h.pairs["f"] == "read-set"].iloc[0]
    assert last["result"] == [1, 2]  # a vector read value is sorted too
    assert list(h.nemesis()["result"]) == [{"n1": "killed"}, {"n1": "started"}]


def test_missing_index_uses_position_and_nil_read_is_none(tmp_path):
    p = write(tmp_path, "{:type :invoke, :f :read, :process 0, :time 5}\n"
                        "{:type :ok, :f :read, :value nil, :process 0, :time 9}\n")
    r = jepsen_edn.load(p).pairs.iloc[0]
    assert (r["invoke_index"], r["complete_index"], r["result"], r["type"]) == (0, 1, None, "ok")


def test_reads_stay_reads_without_adds(tmp_path):
    p = write(tmp_path, "{:type :invoke, :f :read, :process 0}\n"
                        "{:type :ok, :f :read, :value [1 2], :process 0}\n")
    assert jepsen_edn.load(p).pairs.iloc[0]["f"] == "read"


def test_truncated_last_line_is_a_warning(tmp_path):
    p = write(tmp_path, "{:type :invoke, :f :read, :process 0}\n"
                        "{:type :ok, :f :read, :value 1, :process 0}\n{:type :ok, :f")
    h = jepsen_edn.load(p)
    assert len(h.pairs) == 1 and h.pairs.iloc[0]["type"] == "ok"
    assert len(h.warnings) == 1 and f"{p}:3" in h.warnings[0]


def test_multiline_pretty_printed_maps(tmp_path):
    p = write(tmp_path, "{:type :invoke,\n :f :write,\n :value 3,\n :process 0}\n"
                        "{:type :ok,\n :f :write,\n :value 3,\n :process 0}\n")
    h = jepsen_edn.load(p)
    assert len(h.pairs) == 1 and h.pairs.iloc[0]["type"] == "ok"


@pytest.mark.parametrize("text,where,needle", [
    ("{:type :invoke, :f :read, :process 0}\n{:type :ok :f\n{:type :ok}\n", 2, "bad EDN"),
    ("{:type :invoke, :f :read, :process 0}\n[1 2]\n", 2, "expected an op map"),
    ("{:type :invoke, :f :read, :process 0}\n{:f :read, :process 0}\n", 2, "no :type"),
    ("{:type :invoke, :f :read, :process 0}\n{:type :done, :f :read, :process 0}\n", 2,
     "unknown type 'done'"),
    ("{:type :ok, :f :read, :process 0}\n", 1, "has no open invoke"),
    ("{:type :invoke, :f :read, :process 0, :time :soon}\n", 1, ":time must be an integer"),
    ("{:type :invoke, :f :read, :process 0} {:type :ok, :f :read, :process 0}\n"
     "{:a\n", 1, "2 values on one line"),
])
def test_garbage_is_rejected_with_file_line(tmp_path, text, where, needle):
    p = write(tmp_path, text)
    with pytest.raises(BadInput) as ei:
        jepsen_edn.load(p)
    assert ei.value.where == f"{p}:{where}", str(ei.value)
    assert needle in str(ei.value)


def test_empty_edn(tmp_path):
    with pytest.raises(BadInput, match="history is empty"):
        jepsen_edn.load(write(tmp_path, "\n ; only a comment\n"))


# ---------------------------------------------------------------- detection

def test_detect_by_content_not_extension(tmp_path):
    jsonl = tmp_path / "looks.edn"
    jsonl.write_text('{"index":0,"time":0,"process":0,"type":"invoke","f":"read"}\n')
    edn = tmp_path / "looks.jsonl"
    edn.write_text("{:type :invoke, :f :read, :process 0}\n")
    assert detect(jsonl) == "jsonl" and detect(edn) == "jepsen-edn"
    assert load_any(jsonl).pairs.iloc[0]["type"] == "info"
    assert load_any(edn, "auto").pairs.iloc[0]["f"] == "read"


@pytest.mark.skipif(not ETCD.exists(), reason="porcupine corpus not present")
def test_detect_porcupine_etcd_log():
    assert detect(ETCD) == "porcupine"
    assert len(load_any(ETCD).pairs) > 50


def test_detect_unknown_content_names_formats(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("hello world\n")
    with pytest.raises(BadInput) as ei:
        load_any(p)
    msg = str(ei.value)
    assert msg.startswith(f"{p}: unrecognised history format") and "jsonl" in msg
    assert "jepsen-edn" in msg and "porcupine" in msg


def test_forced_format_and_bad_format_name(tmp_path):
    p = tmp_path / "h.edn"
    p.write_text("{:type :invoke, :f :read, :process 0}\n")
    with pytest.raises(BadInput, match="bad JSON"):
        load_any(p, "jsonl")
    with pytest.raises(BadInput, match="unknown format 'xml'"):
        load_any(p, "xml")


def test_run_directory_with_history_edn(tmp_path):
    write(tmp_path, "{:type :invoke, :f :read, :process 0}\n")
    assert detect(tmp_path) == "jepsen-edn"
    assert len(load_any(tmp_path).pairs) == 1


# ---------------------------------------------------------------- fast tokenizer vs edn_format

TRICKY = [
    '{:a 1, :b [1 2.5 -3 3N 4.0M 1e3] :c #{3 1 2} :d nil :e "x y" :f :nemesis :g (1 2)}\n',
    '{:h {"n1" :killed, 2 #{"b" "a"}} :i true :j false :k jepsen/sym :l :a.b/c}\n',
    '#jepsen.history.Op{:index 0 :type :invoke :value [0 [1 2]]}\n{:x {[1 2] 3}}\n',
    '[{:a 1}\n {:b #{[0 1] [0 0]}}]\n',
    '; comment\n{:a\n 1}\n\n{:b "multi\nline"}\n',
    '{:a "esc\\"aped \\\\ \\n \\u00e9" :b \\c :c \\newline :d [\\space \\u0041]}\n',
]


@pytest.mark.parametrize("text", TRICKY)
def test_fast_parse_agrees_with_edn_format(text, tmp_path):
    fast, where = jepsen_edn.fast_parse(text, "f")
    jepsen_edn._register_tags(text)
    warnings: list[str] = []
    slow, _ = jepsen_edn._parse(text, "f", warnings)
    assert fast == [jepsen_edn.plain(v) for v in slow]
    assert len(where) == len(fast) and all(w.startswith("f:") for w in where)


def test_fast_parse_line_numbers():
    _, where = jepsen_edn.fast_parse("; c\n{:a 1}\n\n{:b\n 2}\n{:c 3}", "f")
    assert where == ["f:2", "f:4", "f:6"]


@pytest.mark.parametrize("text", [
    '{:a #_ 1 :b 2}\n',         # discard
    '{:a #inst "2020-01-01T00:00:00Z"}\n',
    '{:a [1 2}\n',              # unbalanced: garbage, left to the library to explain
    '{:a "bad \\q escape"}\n',  # an escape EDN does not have
    '{:a 1/2}\n',               # a ratio
])
def test_fast_parse_falls_back_on_the_unusual(text):
    with pytest.raises(jepsen_edn._Fallback):
        jepsen_edn.fast_parse(text, "f")


def test_fallback_still_loads(tmp_path):
    p = write(tmp_path, '{:type :invoke, :f :write, :value "a\\"b", :process 0 #_ :x}\n'
                        '{:type :ok, :f :write, :value 1/2, :process 0}\n')
    r = jepsen_edn.load(p).pairs.iloc[0]
    assert r["value"] == 'a"b' and r["result"] == 0.5


def test_every_example_parses_the_same_both_ways():
    for path in sorted(EDN.glob("*.edn")):
        text = path.read_text()
        fast, _ = jepsen_edn.fast_parse(text, "f")
        jepsen_edn._register_tags(text)
        slow, _ = jepsen_edn._parse(text, "f", [])
        assert fast == [jepsen_edn.plain(v) for v in slow], path.name


def test_jepsen_03_style_without_index_extra_keys_and_list_values(tmp_path):
    """Newer Jepsen writes no :index and adds keys such as :source; lists are (...) forms."""
    p = write(tmp_path, "\n".join([
        '{:type :invoke, :f :write, :value 5, :time 100, :process 2, :source :generator}',
        '{:type :info, :f :kill, :value ("n3" "n1"), :time 150, :process :nemesis, :x 1}',
        '{:type :ok, :f :write, :value 5, :time 200, :process 2, :source :generator}',
        '{:type :info, :f :kill, :value {"n1" "", "n3" ""}, :time 250, :process :nemesis}',
        '{:type :invoke, :f :read, :value nil, :time 300, :process 2}',
        '{:type :ok, :f :read, :value 5, :time 400, :process 2}',
    ]) + "\n")
    h = jepsen_edn.load(p)
    assert list(h.pairs["invoke_index"]) == [0, 1, 4]
    assert h.nemesis().iloc[0]["value"] == ["n3", "n1"]
    assert "source" not in h.ops[0] and h.pairs.iloc[2]["result"] == 5


# ---------------------------------------------------------------- EDN and JSONL agree

def _edn(x) -> str:
    """A plain value as EDN (strings quoted with escapes, lists as vectors)."""
    if x is None:
        return "nil"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, (int, float)):
        return repr(x)
    if isinstance(x, str):
        return '"' + x.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(x, list):
        return "[" + " ".join(_edn(v) for v in x) + "]"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{_edn(k)} {_edn(v)}" for k, v in x.items()) + "}"
    raise TypeError(x)


def _edn_op(op: dict) -> str:
    parts = [f":index {op['index']}", f":time {op['time']}", f":type :{op['type']}",
             f":f :{op['f']}"]
    p = op["process"]
    parts.append(f":process {p if isinstance(p, int) else ':' + p}")
    parts.append(f":value {_edn(op.get('value'))}")
    if "error" in op:
        parts.append(f":error {_edn(op['error'])}")
    return "{" + ", ".join(parts) + "}"


values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40)
    | st.text(alphabet='ab "\\\n\u00e9', max_size=5),
    lambda inner: st.lists(inner, max_size=3), max_leaves=6)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 1, 2, "nemesis"]), values,
                          st.one_of(st.none(), values), st.sampled_from(["ok", "fail", "info"]),
                          st.sampled_from(["put", "txn", "kill"])),
                min_size=1, max_size=12))
def test_edn_and_jsonl_of_the_same_ops_agree(tmp_path_factory, spec):
    """The same ops written as our JSONL and as Jepsen EDN load to the same pairs.

    (fs outside read/write/cas/add, whose [k v] values the importer would read as keyed.)
    """
    ops, t, busy = [], 0, set()
    for proc, inv_value, comp_value, typ, f in spec:
        if proc in busy:
            continue
        busy.add(proc)
        t += 10
        ops.append({"index": len(ops), "time": t, "process": proc, "type": "invoke", "f": f,
                    "value": inv_value})
        t += 5
        ops.append({"index": len(ops), "time": t, "process": proc, "type": typ, "f": f,
                    "value": comp_value, "error": "timeout" if typ == "info" else None})
        busy.discard(proc)
    ops = [{k: v for k, v in o.items() if v is not None or k == "value"} for o in ops]
    d = tmp_path_factory.mktemp("agree")
    (d / "h.jsonl").write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in ops))
    (d / "h.edn").write_text("".join(_edn_op(o) + "\n" for o in ops))
    a = load_any(d / "h.jsonl").pairs
    b = load_any(d / "h.edn").pairs
    # Jepsen's nemesis logs (info, info); our JSONL has (invoke, <type>): the types differ
    a, b = a[a["process"] != "nemesis"], b[b["process"] != "nemesis"]
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
