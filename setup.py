"""oscarvt: automatic testing of the OSCAR cluster suite on virtual clusters."""

from setuptools import find_packages, setup

# The master and the worker (a hypervisor host installs buildbot-worker only, see workers/).
BUILDBOT = ["buildbot==4.3.0", "buildbot-worker==4.3.0", "buildbot-www==4.3.0",
            "buildbot-waterfall-view==4.3.0", "buildbot-console-view==4.3.0", "buildbot-grid-view==4.3.0",
            "buildbot-badges==4.3.0",  # a status badge per builder (docs/master.md)
            "bcrypt==5.0.0",  # the master checks www-users and change-hook-users hashes (oscarvt_master.secret_files)
            "psycopg2-binary==2.9.13"]  # SQLAlchemy's postgresql:// driver, for a db_url on PostgreSQL

setup(
    name="oscarvt",
    version="0.1.0",
    description="Test the OSCAR cluster suite on virtual clusters (driver and Buildbot steps)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # Not oscarvt_dev (the test guest, a local master and worker): the tests, bench/ and make demo
    # import it from the repository; no master or worker needs it.
    packages=find_packages(include=["oscarvt", "oscarvt.*", "oscarvt_steps", "oscarvt_master"]),
    package_data={"oscarvt": ["schema/*.dtd", "guest/*"]},
    install_requires=[
        "paramiko==5.1.0",
        "lxml==6.1.3",
        "PyYAML==6.0.3",
        "qemu.qmp==0.0.6",
        "dacite==1.9.2",
        "cryptography==50.0.2",  # the headnode host keys the driver makes (oscarvt.identity)
        "matplotlib==3.11.2",  # the pictures: a build's timeline (oscarvt.timeline), a builder's trend (master)
    ],
    extras_require={
        "buildbot": BUILDBOT,
        "test": BUILDBOT + [
            "pytest==9.2.0", "pytest-timeout==2.4.0", "pytest-xdist==3.8.0", "aiosmtpd==1.4.6",
            "ruff==0.17.6", "mypy==2.4.1", "types-PyYAML==6.0.12.20261113",
            "types-paramiko==5.1.0.20261030", "lxml-stubs==0.5.1",
        ],
    },
    entry_points={"console_scripts": ["oscarvt = oscarvt.cli:main"]},
)
