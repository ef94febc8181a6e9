"""The consortium portal (``cartreg serve``): sites upload and answer queries in a browser,
coordinators review and merge, statisticians download pseudonymised data.

Layout:

* :mod:`~cartreg.portal.schema`: the portal's tables in the registry store (users, sessions,
  secrets, site mappings, uploads, reports, merges, audit log).
* :mod:`~cartreg.portal.users`, :mod:`~cartreg.portal.sites`, :mod:`~cartreg.portal.audit`:
  the library behind ``cartreg users``, ``cartreg sites`` and ``cartreg audit`` (no web imports).
* :mod:`~cartreg.portal.uploads`: checking uploaded files and zip archives before anything
  reads them.
* :mod:`~cartreg.portal.jobs`, :mod:`~cartreg.portal.processing`: the one registry writer and
  the background worker that ingests, validates and stores an upload, and merges.
* :mod:`~cartreg.portal.app` (FastAPI, imported only by ``cartreg serve`` and the tests), with
  :mod:`~cartreg.portal.security`, :mod:`~cartreg.portal.auth` and ``routes/``.

Nothing is imported here, so that the CLI's user commands never load the web stack.
"""
