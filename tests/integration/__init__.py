# a package, so that tests/unit/test_x.py and tests/integration/test_x.py can share a basename
