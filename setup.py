"""Packaging for capi-sync: also the file Dataflow workers install with --setup_file."""
import setuptools

VERSION = "0.1.0"

setuptools.setup(
    name="capi-sync",
    version=VERSION,
    description=(
        "Apache Beam pipeline that sends warehouse and Parquet conversions to the "
        "OpenAI Conversions API"
    ),
    python_requires=">=3.10",
    # The data folders are named as packages too: setuptools ships a folder without an
    # __init__.py only when it is listed (it warns that it will stop guessing).
    packages=[*setuptools.find_packages(include=["pipeline*", "transforms*", "connectors*"]),
              "transforms.presets", "pipeline.demo_data"],
    package_data={"transforms": ["*.yaml"],                  # the default mapping
                  "transforms.presets": ["*.yaml"],          # --mapping ga4, segment, ...
                  "pipeline": ["*.json", "Dockerfile"],
                  "pipeline.demo_data": ["*.parquet"],       # the README's first command
                  "connectors": ["*.yaml"]},
    include_package_data=True,
    install_requires=[
        "apache-beam[gcp]>=2.60,<3",   # the pipeline, its IO and Dataflow runner
        "requests>=2.31",              # the CAPI client (pooled HTTP sessions)
        "pyarrow>=19",                 # Parquet, columnar mapping; arrow.json/uuid/opaque types
        "phonenumbers>=8.13",          # phone normalization to E.164
        "pycountry>=23",               # country names / alpha-3 to alpha-2
        "iso4217>=1.11",               # currency codes and minor-unit exponents
        "PyYAML>=6",                   # mapping files
        "jsonschema>=4.18",            # mapping file validation
        "duckdb>=1.0",                 # duckdb:// SQL source
        "psycopg[binary]>=3.1",        # postgresql:// cursor fallback (Redshift), query checks
        "adbc-driver-postgresql>=1.6", # postgresql:// read as Arrow (binary COPY, streamed)
        "orjson>=3.9",                 # JSON of 1,000-event bodies at a fraction of json's cost
        "msgspec>=0.18",               # JSON columns and lines, 2-3x json's speed; emulator --fast
        "sqlparse>=0.4",               # a query's trailing comments and ';' found outside literals
        "setuptools>=68",              # Dataflow staging builds setup.py's sdist here (3.12+ venvs lack it)
        "build>=1",                    # ... by `python -m build`; else Beam prints "No module named build"
        "psutil>=5.9",                 # Ctrl-C / SIGTERM also stop Beam's own worker processes
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6.100", "ruff>=0.5", "psutil>=5.9",
                 "adbc-driver-snowflake>=1.6"],   # the Snowflake tests import its driver
        "gcp-secrets": ["google-cloud-secret-manager>=2"],
        "snowflake": ["adbc-driver-snowflake>=1.6"],   # snowflake:// read as Arrow
    },
    entry_points={"console_scripts": ["capi-sync=pipeline.cli:entry"]},
)
