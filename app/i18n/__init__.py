"""Donor-facing languages: the message catalogs under translations/ (what is
extracted from the code and templates, what a language still lacks, compiling
.po to .mo) and the language a request asks for.

The .po files are the source; .mo files are built from them (`make`, the test
suite) and never committed.
"""
