"""Process harness for integration tests: real Label Studio, PostgreSQL and Redis on free loopback ports.

Plain Python (no Django, no pytest), so CI scripts can use it too; see each module's docstring.
"""
