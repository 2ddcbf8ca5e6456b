"""Start methods: the application's own multiprocessing, and scripts without a main guard.

Failure catalog items 8 and 9. The shipper is started with subprocess, never
through multiprocessing, so ``spawn`` and ``forkserver`` never re-run the
application's ``__main__`` for it. A module-level client re-created in a spawn
child (which imports the main module as ``__mp_main__``) starts no shipper until
that child logs.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet_helpers import Programs, program_env, record, write_program
from logwell.testing import IngestServer

pytestmark = pytest.mark.fork

METHODS = ["fork", "spawn", "forkserver"]


@pytest.fixture
def programs() -> Iterator[Programs]:
    with Programs() as running:
        yield running


NO_GUARD_PROGRAM = """
    import json, multiprocessing, os, sys

    import fleetenv

    METHOD = sys.argv[1]
    MARKER = sys.argv[2]
    multiprocessing.set_start_method(METHOD)
    with open(MARKER, "a") as f:  # one line per execution of this module's top level
        f.write(f"{os.getpid()} {__name__}\\n")

    client = fleetenv.client()
    for i in range(500):
        client.info("no main guard", {"src": "main", "i": i})

    def child_work(k):
        for i in range(50):
            client.info("fork child", {"src": "child", "pid": os.getpid(), "k": k, "i": i})

    children = []
    if METHOD == "fork":
        # Forking needs no main guard; the children share this process's shipper.
        children = [multiprocessing.Process(target=child_work, args=(k,)) for k in range(3)]
        for child in children:
            child.start()
        for child in children:
            child.join()
    assert client.flush(10.0)
    print("RESULT " + json.dumps({
        "shippers": fleetenv.shipper_children(),
        "stats_shipper": client.stats()["shipper"]["pid"],
        "exitcodes": [child.exitcode for child in children],
    }))
"""


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.timeout(60)
def test_script_without_main_guard_starts_exactly_one_shipper(
    method: str, server: IngestServer, programs: Programs, tmp_path: Path
) -> None:
    """A no-main-guard script with a module-level client runs once and starts one shipper."""
    script = write_program(tmp_path, "noguard.py", NO_GUARD_PROGRAM)
    marker = tmp_path / "executions.txt"
    program = programs.python(script, program_env(server), method, str(marker))
    started = time.monotonic()
    result = json.loads(program.expect("RESULT", 40.0))
    code = program.wait(20.0)
    elapsed = time.monotonic() - started
    _, err = program.finish(1.0)
    assert code == 0, err
    assert "bootstrapping phase" not in err
    assert err == ""
    executions = marker.read_text().splitlines()
    assert len(executions) == 1 and executions[0].endswith(" __main__"), executions
    assert result["shippers"] == [result["stats_shipper"]], "exactly one shipper, the client's"
    assert result["exitcodes"] == ([0, 0, 0] if method == "fork" else [])
    children = 3 if method == "fork" else 0
    sent = 500 + 50 * children
    counts = Counter(e["metadata"]["src"] for e in server.entries)
    assert counts["main"] == 500
    assert counts["child"] == 50 * children
    keys = {(e["metadata"].get("pid"), e["metadata"].get("k"), e["metadata"]["i"])
            for e in server.entries}
    assert len(keys) == len(server.entries) == sent
    record(f"no-main-guard-{method}", sent=sent, delivered=len(server.entries),
           lost=sent - len(server.entries), shippers=len(result["shippers"]),
           seconds=round(elapsed, 2))


POOL_PROGRAM = """
    import json, multiprocessing, os, sys

    import fleetenv

    METHOD = sys.argv[1]
    MARKER = sys.argv[2]
    with open(MARKER, "a") as f:
        f.write(f"{os.getpid()} {__name__}\\n")

    # Created at import: spawn and forkserver children create it again as __mp_main__.
    client = fleetenv.client()

    def work(i):
        client.info("task", {"src": "task", "pid": os.getpid(), "i": i})
        assert client.flush(10.0)  # waits for this process's entries only
        return os.getpid(), client.stats()["shipper"]["pid"]

    def idle():
        return fleetenv.shipper_children()

    if __name__ == "__main__":
        ctx = multiprocessing.get_context(METHOD)
        client.info("main before", {"src": "main"})
        assert client.flush(10.0)
        main_shipper = client.stats()["shipper"]["pid"]
        pool = ctx.Pool(3)
        results = pool.map(work, range(60), chunksize=1)
        pool.close()
        pool.join()
        # A child that never logs starts no shipper, even with a module-level client.
        with ctx.Pool(1) as idle_pool:
            idle_shippers = idle_pool.apply(idle)
        client.info("main after", {"src": "main"})
        assert client.flush(10.0)
        print("RESULT " + json.dumps({
            "main_pid": os.getpid(), "main_shipper": main_shipper, "results": results,
            "idle_shippers": idle_shippers, "stats": client.stats(),
        }))
"""


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.timeout(90)
def test_multiprocessing_children_log_under_each_start_method(
    method: str, server: IngestServer, programs: Programs, tmp_path: Path
) -> None:
    """Pool workers of each start method log via a module-level client; each entry arrives once."""
    script = write_program(tmp_path, "pool.py", POOL_PROGRAM)
    marker = tmp_path / "executions.txt"
    program = programs.python(script, program_env(server), method, str(marker))
    started = time.monotonic()
    result = json.loads(program.expect("RESULT", 75.0))
    code = program.wait(20.0)
    elapsed = time.monotonic() - started
    _, err = program.finish(1.0)
    assert code == 0, err
    assert err == ""
    assert result["idle_shippers"] == []
    executions = marker.read_text().splitlines()
    assert sum(line.endswith(" __main__") for line in executions) == 1

    worker_shippers = {(pid, shipper) for pid, shipper in result["results"]}
    workers = {pid for pid, _ in worker_shippers}
    shippers = {shipper for _, shipper in worker_shippers}
    assert 0 not in shippers
    if method == "fork":
        # Forked workers share the main process's shipper.
        assert shippers == {result["main_shipper"]}
    else:
        # A spawned worker owns one shipper of its own (it inherited no pipe), never two.
        assert len(worker_shippers) == len(workers) == len(shippers)
        assert result["main_shipper"] not in shippers

    entries = server.entries
    tasks = Counter(e["metadata"]["i"] for e in entries if e["metadata"]["src"] == "task")
    assert tasks == Counter(range(60)), "every task's entry arrives exactly once"
    assert sum(e["metadata"]["src"] == "main" for e in entries) == 2
    assert {e["metadata"]["pid"] for e in entries if "pid" in e["metadata"]} == workers
    assert result["stats"]["logged"] == result["stats"]["delivered"] == 2
    record(f"multiprocessing-{method}", sent=62, delivered=len(entries), lost=62 - len(entries),
           workers=len(workers), shippers=1 + (0 if method == "fork" else len(shippers)),
           seconds=round(elapsed, 2))
