"""Run a console command and SIGKILL it on the n-th call of a function, right after that call (a kill -9 at a known
point of a write): `python tests/kill_at.py MODULE.FUNCTION N COMMAND ARGS...`, COMMAND one of hera_nbs.cli's."""
import importlib, os, signal, sys

target, n, command, *args = sys.argv[1:]
module_name, name = target.rsplit('.', 1)
module = importlib.import_module(module_name)
original, calls = getattr(module, name), []

def dying(*a, **kw):
    "The original function; on its n-th call the process dies as soon as it returns."
    result = original(*a, **kw)
    calls.append(1)
    if len(calls) == int(n): os.kill(os.getpid(), signal.SIGKILL)
    return result

setattr(module, name, dying)
from hera_nbs.cli import ENTRY_POINTS
sys.exit(ENTRY_POINTS[command](args))
