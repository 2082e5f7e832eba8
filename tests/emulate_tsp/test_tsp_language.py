"""The Lua-subset interpreter behind the TSP emulators (no sockets)."""

from __future__ import annotations

import pytest

from hil.emulate.tsp import (
    RUNTIME_ERROR,
    SYNTAX_ERROR,
    HostFunction,
    HostTable,
    LuaTable,
    ScriptCollector,
    TspError,
    TspInterpreter,
    format_number,
    to_number,
    tostring,
)


@pytest.fixture
def lua():
    out: list[str] = []
    state = {"level": 0.0}
    g = LuaTable()
    interp = TspInterpreter(g)
    g.set("print", HostFunction("print", lambda *a: out.append("\t".join(tostring(x) for x in a))))

    def set_level(v):
        v = to_number(v, "levelv")
        if abs(v) > 10:
            raise TspError(-222, "Parameter data out of range")
        state["level"] = v

    source = HostTable("smua.source", attributes={"levelv": (lambda: state["level"], set_level),
                                                  "compliance": (lambda: False, None)})
    g.set("smua", HostTable("smua", members={"source": source, "OUTPUT_ON": 1.0,
                                             "pair": lambda: (1.0, "two")}))
    return interp, out, state


def test_statements_expressions_and_multiple_returns(lua):
    interp, out, state = lua
    interp.execute("smua.source.levelv = 0.5; x = smua.source.levelv * 2 print(x, x > 0.9, nil, 'a' .. 1)")
    interp.execute('smua["source"].levelv = 2^-1 + #{1, 2, 3}')
    interp.execute("local a, b = smua.pair() print(smua.pair()) print((smua.pair())) print(a, b)")
    interp.execute("t = {n = 3, [2] = 'x', 7} print(t.n, t[1], t[2], #t, 0x10, 1e-3, -2 ^ 2, 7 % 3)")
    assert state["level"] == 3.5
    assert out == ["1.00000e+00\ttrue\tnil\ta1", "1.00000e+00\ttwo", "1.00000e+00", "1.00000e+00\ttwo",
                   "3.00000e+00\t7.00000e+00\tx\t2.00000e+00\t1.60000e+01\t1.00000e-03\t-4.00000e+00\t1.00000e+00"]


def test_control_flow_and_functions(lua):
    interp, out, _ = lua
    interp.execute("""
        function sum(...) local s = 0 for _, v in ipairs({...}) do s = s + v end return s end
        local k = 0 while true do k = k + 1 if k >= 3 then break end end
        repeat k = k + 1 until k == 5
        for i = 10, 1, -4 do print(i) end
        if k == 4 then print('no') elseif k == 5 then print(sum(1, 2, k)) else print('no') end
        local f = function(a) return a and 'yes' or 'no' end print(f(false), f(0))
    """)
    assert out == ["1.00000e+01", "6.00000e+00", "2.00000e+00", "8.00000e+00", "no\tyes"]


def test_syntax_error_runs_nothing_runtime_error_stops_at_the_statement(lua):
    interp, out, state = lua
    with pytest.raises(TspError) as syntax:
        interp.execute("smua.source.levelv = 1 smua.source.levelv = ")
    assert syntax.value.code == SYNTAX_ERROR and state["level"] == 0.0
    with pytest.raises(TspError) as runtime:
        interp.execute("smua.source.levelv = 1\nnothing.here = 2\nsmua.source.levelv = 3")
    assert runtime.value.code == RUNTIME_ERROR and state["level"] == 1.0
    assert "line 2" in runtime.value.message and "nothing" in runtime.value.message
    with pytest.raises(TspError) as ranged:
        interp.execute("smua.source.levelv = 11")
    assert ranged.value.code == -222 and state["level"] == 1.0
    for bad, code in [("smua.source.compliance = true", RUNTIME_ERROR), ("smua.source.bogus = 1", RUNTIME_ERROR),
                      ("smua.source.levelv = 'abc'", RUNTIME_ERROR), ("x = 'unfinished", SYNTAX_ERROR),
                      ("print(1", SYNTAX_ERROR), ("*IDN?", SYNTAX_ERROR), ("x = 1 +", SYNTAX_ERROR),
                      ("smua.reset()", RUNTIME_ERROR), ("for i = 1, 'x' do end", RUNTIME_ERROR)]:
        with pytest.raises(TspError) as err:
            interp.execute(bad)
        assert err.value.code == code, bad
    assert out == []


def test_runaway_loops_are_bounded(lua, monkeypatch):
    interp, _, _ = lua
    monkeypatch.setattr("hil.emulate.tsp.MAX_LOOP_ITERATIONS", 1000)
    with pytest.raises(TspError) as err:
        interp.execute("while true do end")
    assert err.value.code == RUNTIME_ERROR
    with pytest.raises(TspError):
        interp.execute("function f() return f() end f()")


def test_script_collector_and_number_format():
    c = ScriptCollector()
    assert c.feed("print(1)") == "print(1)"
    assert c.feed("loadscript sweep") is None and c.feed("x = 1") is None
    done = c.feed("endscript")
    assert (done.name, done.run, done.source) == ("sweep", False, "x = 1")
    assert c.feed("loadandrunscript") is None and c.feed("endscript").run is True
    assert format_number(0.1) == "1.00000e-01" and format_number(-2.5, 3) == "-2.50e+00"
    assert format_number(float("nan")) == "nan"


def test_string_library(lua):
    interp, out, _ = lua
    interp.execute(r'''print(string.format("%d V, %.3f A, %s %%", 3, 0.0012345, "x"), string.sub("1A01", 2, 2), string.sub("1A01", -2))''')
    assert out == ["3 V, 0.001 A, x %\tA\t01"]
