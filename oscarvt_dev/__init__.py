"""oscarvt's development tools: what the tests, the benches (``bench/``) and ``make demo`` use,
and no master or worker does. setup.py does not install this package; it is imported from the
repository (the editable install ``make venv`` makes puts the repository on the path, and so
does pytest.ini's ``pythonpath``).

- ``testguest``: a tiny guest that boots in seconds under TCG (``make testguest`` builds it);
- ``local``: a Buildbot master and worker on this host, its REST API, the git repository they build;
- ``ping``: waiting for a guest's LAN.
"""
