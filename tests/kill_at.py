"""Run a console command and SIGKILL it on the n-th call of a function, right after that call (a kill -9 at a known
point of a write): `python tests/kill_at.py [--in-workers] MODULE.FUNCTION N COMMAND ARGS...`, COMMAND one of
hera_nbs.cli's. With `--in-workers` the command itself is spared and each of its spawned worker processes dies on
its own n-th call instead (spawn runs this file again in each worker, as `__mp_main__`)."""
import importlib, os, signal, sys

argv = sys.argv[1:]
in_workers = argv[0] == '--in-workers'
target, n, command, *args = argv[in_workers:]

def dying(original):
    "`original`; on its n-th call in this process the process dies as soon as it returns."
    calls = []
    def call(*a, **kw):
        result = original(*a, **kw)
        calls.append(1)
        if len(calls) == int(n): os.kill(os.getpid(), signal.SIGKILL)
        return result
    return call

if __name__ == ('__mp_main__' if in_workers else '__main__'):
    module_name, name = target.rsplit('.', 1)
    module = importlib.import_module(module_name)
    setattr(module, name, dying(getattr(module, name)))
if __name__ == '__main__':
    from hera_nbs.cli import ENTRY_POINTS
    sys.exit(ENTRY_POINTS[command](args))
